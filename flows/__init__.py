"""LeadFlow: lead pipeline of Prefect flows, dbt models, a GX gate, sales tasks and nurture."""

import os

# Telemetry off before Prefect, dbt or GX are imported, so nothing waits on the network.
# setdefault: an operator who opts in through the environment keeps their choice.
for _name, _value in {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "GX_ANALYTICS_ENABLED": "false",
}.items():
    os.environ.setdefault(_name, _value)

__version__ = "0.1.0"
