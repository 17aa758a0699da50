//! What a rollout does next, as a plain function of what the nodes run now.
//!
//! Forward, nodes are taken from the highest ordinal down (the order a
//! StatefulSet's partition walks); each is updated, then held to its gates
//! before the next one is touched. Back (after a gate failed), the nodes
//! that differ from what they ran before are restored from the lowest
//! ordinal up (the last one updated first), each held to its gates again.
//! Because the decision reads only the nodes' state, a habd restarted at any
//! point takes up exactly where it was.

/// One node as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// Ordinal, from 0.
    pub ordinal: u32,
    /// The image it runs now (None: no node there).
    pub running: Option<String>,
    /// The image it ran when the rollout began.
    pub before: Option<String>,
    /// Its gates passed since it last changed.
    pub settled: bool,
}

/// Which way a rollout goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// To the new image.
    Forward,
    /// Back to what each node ran before.
    Back,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Replace the node with one running `image`.
    Update {
        /// Node.
        ordinal: u32,
        /// Pinned image.
        image: String,
    },
    /// Remove the node (rolling back a node that did not exist before).
    Remove {
        /// Node.
        ordinal: u32,
    },
    /// Hold the node to its gates until they pass or fail.
    Gate {
        /// Node.
        ordinal: u32,
    },
    /// Every node is where it should be, settled.
    Finished,
}

/// The next action of a rollout to `target`.
pub fn next(nodes: &[NodeState], target: &str, direction: Direction) -> Action {
    let mut order: Vec<&NodeState> = nodes.iter().collect();
    match direction {
        Direction::Forward => order.sort_by_key(|n| std::cmp::Reverse(n.ordinal)),
        Direction::Back => order.sort_by_key(|n| n.ordinal),
    }
    for n in order {
        let goal = match direction {
            Direction::Forward => Some(target),
            Direction::Back => n.before.as_deref(),
        };
        if n.running.as_deref() != goal {
            return match goal {
                Some(image) => Action::Update {
                    ordinal: n.ordinal,
                    image: image.to_string(),
                },
                None => Action::Remove { ordinal: n.ordinal },
            };
        }
        if goal.is_some() && !n.settled {
            return Action::Gate { ordinal: n.ordinal };
        }
    }
    Action::Finished
}

/// When a rollout turns back: every node that still runs what it ran
/// before counts as settled (it was never touched); the others must be
/// restored and held to their gates again.
pub fn turn_back(nodes: &mut [NodeState]) {
    for n in nodes {
        n.settled = n.running == n.before;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "r/node@sha256:a";
    const B: &str = "r/node@sha256:b";

    fn fleet(n: u32) -> Vec<NodeState> {
        (0..n)
            .map(|ordinal| NodeState {
                ordinal,
                running: Some(A.into()),
                before: Some(A.into()),
                settled: false,
            })
            .collect()
    }

    /// Runs the planner, applying each action as a perfect target would,
    /// with `fail_at` the node whose gate fails going forward.
    fn simulate(mut nodes: Vec<NodeState>, fail_at: Option<u32>) -> Vec<Action> {
        let mut dir = Direction::Forward;
        let mut log = Vec::new();
        loop {
            let a = next(&nodes, B, dir);
            log.push(a.clone());
            match a {
                Action::Update { ordinal, image } => {
                    let n = &mut nodes[ordinal as usize];
                    n.running = Some(image);
                    n.settled = false;
                }
                Action::Remove { ordinal } => nodes[ordinal as usize].running = None,
                Action::Gate { ordinal } => {
                    if dir == Direction::Forward && fail_at == Some(ordinal) {
                        dir = Direction::Back;
                        turn_back(&mut nodes);
                    } else {
                        nodes[ordinal as usize].settled = true;
                    }
                }
                Action::Finished => return log,
            }
            // Never a second node changed before the first passed its gates.
            let changes: Vec<_> = log
                .iter()
                .filter(|a| !matches!(a, Action::Finished))
                .collect();
            for pair in changes.windows(2) {
                assert!(
                    matches!(pair[0], Action::Gate { .. })
                        || matches!(pair[1], Action::Gate { .. }),
                    "two changes in a row: {log:?}"
                );
            }
        }
    }

    #[test]
    fn forward_walks_down_one_node_at_a_time() {
        let log = simulate(fleet(3), None);
        assert_eq!(
            log,
            vec![
                Action::Update {
                    ordinal: 2,
                    image: B.into()
                },
                Action::Gate { ordinal: 2 },
                Action::Update {
                    ordinal: 1,
                    image: B.into()
                },
                Action::Gate { ordinal: 1 },
                Action::Update {
                    ordinal: 0,
                    image: B.into()
                },
                Action::Gate { ordinal: 0 },
                Action::Finished,
            ]
        );
    }

    #[test]
    fn a_failed_gate_restores_the_updated_nodes_last_first() {
        let log = simulate(fleet(3), Some(1));
        assert_eq!(
            log,
            vec![
                Action::Update {
                    ordinal: 2,
                    image: B.into()
                },
                Action::Gate { ordinal: 2 },
                Action::Update {
                    ordinal: 1,
                    image: B.into()
                },
                Action::Gate { ordinal: 1 },
                Action::Update {
                    ordinal: 1,
                    image: A.into()
                },
                Action::Gate { ordinal: 1 },
                Action::Update {
                    ordinal: 2,
                    image: A.into()
                },
                Action::Gate { ordinal: 2 },
                Action::Finished,
            ]
        );
    }

    #[test]
    fn first_failure_leaves_the_rest_untouched() {
        let log = simulate(fleet(4), Some(3));
        assert_eq!(log.len(), 5);
        assert_eq!(
            log[2],
            Action::Update {
                ordinal: 3,
                image: A.into()
            }
        );
    }

    #[test]
    fn resumes_from_what_the_nodes_run() {
        // habd died after updating node 1, before its gate passed.
        let mut nodes = fleet(3);
        nodes[2].running = Some(B.into());
        nodes[2].settled = true;
        nodes[1].running = Some(B.into());
        assert_eq!(
            next(&nodes, B, Direction::Forward),
            Action::Gate { ordinal: 1 }
        );
        // Died during a rollback: node 0 never touched, node 1 restored,
        // node 2 not yet.
        nodes[0].settled = true;
        nodes[1].running = Some(A.into());
        nodes[1].settled = true;
        nodes[2].settled = false;
        assert_eq!(
            next(&nodes, B, Direction::Back),
            Action::Update {
                ordinal: 2,
                image: A.into()
            }
        );
    }

    #[test]
    fn a_new_fleet_is_created_and_removed_on_failure() {
        let mut nodes: Vec<NodeState> = (0..2)
            .map(|ordinal| NodeState {
                ordinal,
                running: None,
                before: None,
                settled: false,
            })
            .collect();
        assert_eq!(
            next(&nodes, B, Direction::Forward),
            Action::Update {
                ordinal: 1,
                image: B.into()
            }
        );
        nodes[1].running = Some(B.into());
        turn_back(&mut nodes);
        assert_eq!(
            next(&nodes, B, Direction::Back),
            Action::Remove { ordinal: 1 }
        );
    }
}
