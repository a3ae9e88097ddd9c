"""Send identify and track calls with RudderStack's official Python SDK (PyPI
rudder-sdk-python) to the data plane URL and write key given as arguments, with the SDK's
defaults: a background consumer that batches to /v1/batch and gzips every request.
Exits non-zero if the SDK reports any error."""
import sys
from datetime import datetime, timezone

from rudderstack.analytics.client import Client

host, key, anon = sys.argv[1], sys.argv[2], sys.argv[3]
errors = []
client = Client(
    key,
    host=host,
    # Fail fast instead of the default ten retries with backoff.
    max_retries=1,
    on_error=lambda error, items: errors.append(repr(error)),
)
print(f"gzip={client.gzip}")
client.identify("rudder-user", {"plan": "team"}, anonymous_id=anon)
client.track(
    "rudder-user",
    "Order Completed",
    {"revenue": 49, "currency": "EUR"},
    timestamp=datetime(2026, 11, 22, 10, 0, 0, tzinfo=timezone.utc),
    anonymous_id=anon,
)
client.flush()
client.join()
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
