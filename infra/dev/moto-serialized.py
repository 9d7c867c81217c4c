"""moto's server with DynamoDB's writes made atomic against each other.

moto (5.x) serves requests on threads, and its TransactWriteItems snapshots the whole table, applies the
writes, and on a failed condition puts the snapshot back: writes that other requests made in between are
lost, so concurrent conditional adds (the quota and credit primitives) over-admit. DynamoDB itself never
does that. Holding one lock across every DynamoDB backend operation restores DynamoDB's atomicity while
other services (SQS long polls above all) keep their threads.

`/moto-api/data.json?service=ses` reads one service's models: the tests read back sent mail that way,
where the unfiltered dump walks every item of every table the suite wrote and takes minutes.
"""
import functools
import json
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.moto_api._internal.responses import MotoAPIResponse

_lock = threading.RLock()


def _serialized(method):
    @functools.wraps(method)
    def call(*args, **kwargs):
        with _lock:
            return method(*args, **kwargs)

    return call


for _name, _attr in list(vars(DynamoDBBackend).items()):
    if not _name.startswith("_") and callable(_attr):
        setattr(DynamoDBBackend, _name, _serialized(_attr))

def _model_data(self, request, full_url, headers):
    from urllib.parse import parse_qs, urlparse

    only = parse_qs(urlparse(full_url).query).get("service")
    if not only:
        return _unfiltered(self, request, full_url, headers)
    from moto.core.model_instances import model_data

    results = {}
    for service in sorted(set(only) & set(model_data)):
        models = model_data[service]
        results[service] = {}
        for name in sorted(models):
            results[service][name] = []
            for instance in models[name].instances_tracked:
                fields = {}
                for attr in dir(instance):
                    if attr.startswith("_"):
                        continue
                    try:
                        value = getattr(instance, attr)
                        json.dumps(value)
                    except (TypeError, AttributeError, ValueError):
                        continue
                    fields[attr] = value
                results[service][name].append(fields)
    return 200, {"Content-Type": "application/json"}, json.dumps(results)


_unfiltered = MotoAPIResponse.model_data
# Before moto's URL map binds the method (it does so when moto.server imports it).
MotoAPIResponse.model_data = _model_data

from moto.server import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:])
