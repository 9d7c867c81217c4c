"""moto's server with DynamoDB's writes made atomic against each other.

moto (5.x) serves requests on threads, and its TransactWriteItems snapshots the whole table, applies the
writes, and on a failed condition puts the snapshot back: writes that other requests made in between are
lost, so concurrent conditional adds (the quota and credit primitives) over-admit. DynamoDB itself never
does that. Holding one lock across every DynamoDB backend operation restores DynamoDB's atomicity while
other services (SQS long polls above all) keep their threads.
"""
import functools
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

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

if __name__ == "__main__":
    main(sys.argv[1:])
