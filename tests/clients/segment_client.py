"""Send identify, page and track calls with Segment's official Python library
(PyPI segment-analytics-python) to the host and write key given as arguments.
Exits non-zero if the library reports any error."""
import sys
from datetime import datetime, timezone

import segment.analytics as analytics

host, key, anon = sys.argv[1], sys.argv[2], sys.argv[3]
errors = []
analytics.write_key = key
analytics.host = host
analytics.sync_mode = True
analytics.on_error = lambda error, items: errors.append(repr(error))

analytics.identify("py-user", {"plan": "pro"}, anonymous_id=anon)
analytics.page(
    user_id="py-user",
    anonymous_id=anon,
    name="Camera X100",
    properties={"url": "https://shop.example/products/x100?utm_source=facebook&utm_medium=social"},
    timestamp=datetime(2026, 11, 20, 9, 0, 0, tzinfo=timezone.utc),
)
analytics.track(
    "py-user",
    "Order Completed",
    {"revenue": 1299, "currency": "EUR"},
    timestamp=datetime(2026, 11, 20, 10, 0, 0, tzinfo=timezone.utc),
    anonymous_id=anon,
)
analytics.flush()
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
