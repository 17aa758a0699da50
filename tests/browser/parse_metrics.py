"""Parses habd's /metrics (read on stdin) with Prometheus' own parsers from
the prometheus-client package: the OpenMetrics parser (habd's content type;
strict, it refuses a malformed exposition) and the classic text-format one.
Prints {family: {"type": t, "samples": [[name, labels, value], ...]}} as JSON;
exits non-zero, with the parser's reason, when either parser refuses it."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as classic

text = sys.stdin.read()
out = {}
for family in openmetrics(text):
    out[family.name] = {
        "type": family.type,
        "samples": [[s.name, s.labels, s.value] for s in family.samples],
    }
# The classic parser reads the same text (without the OpenMetrics # EOF).
classic_names = {f.name for f in classic(text.replace("# EOF\n", ""))}
missing = {n for n in out if n not in classic_names and n + "_total" not in classic_names}
if missing:
    sys.exit(f"the classic parser did not find {sorted(missing)}")
json.dump(out, sys.stdout)
