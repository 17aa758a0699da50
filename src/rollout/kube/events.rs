//! Every step of a rollout on Kubernetes, recorded as an events.k8s.io/v1
//! Event on the fleet's StatefulSet through kube-runtime's recorder.

use std::sync::LazyLock;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType};
use prometheus_client::metrics::counter::Counter;

use super::KubeTarget;
use crate::config::FleetConfig;

/// Kubernetes Events the API refused (counted in habd's metrics as
/// `hab_kubernetes_events_failed`).
pub static EVENTS_FAILED: LazyLock<Counter> = LazyLock::new(Counter::default);

impl KubeTarget {
    /// Records a Kubernetes Event on the fleet's StatefulSet
    /// (events.k8s.io/v1, reporting controller `habd`). A refused Event is
    /// logged and counted (`hab_kubernetes_events_failed`), never fatal.
    pub async fn event(&self, fleet: &FleetConfig, reason: &str, message: &str) {
        let reference = ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some("StatefulSet".into()),
            name: Some(fleet.name.clone()),
            namespace: Some(self.namespace.clone()),
            ..Default::default()
        };
        let warning = matches!(reason, "GateFailed" | "RolledBack" | "RolloutHeld");
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            // The API takes at most 1 kB.
            note: Some(message.chars().take(1000).collect()),
            action: "Rollout".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            EVENTS_FAILED.inc();
            tracing::warn!(fleet = %fleet.name, reason, error = %e, "the Kubernetes API refused an event");
        }
    }
}
