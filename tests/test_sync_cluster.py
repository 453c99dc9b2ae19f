"""The sync against a real Redis Cluster of three primaries: every primary scanned and followed."""

from __future__ import annotations

import time

import pytest
from redis.cluster import RedisCluster

from flywheel_sync.mirror import sync_pass as syncing
from tests.platform import eventually, mirror_of, playbook_value

pytestmark = pytest.mark.slow


@pytest.fixture
def engine(worker_engine):
    """The sync runs as the worker's login, granted only what docs/sync.md says (tests/conftest.py)."""
    return worker_engine


@pytest.fixture
def cluster_client(redis_cluster):
    client = RedisCluster.from_url(redis_cluster.url)
    yield client
    for key in client.scan_iter(match="playbook:*"):
        client.delete(key)
    client.close()


def test_the_client_of_a_cluster_url_is_a_cluster_client(redis_cluster):
    assert isinstance(syncing.connect_redis(redis_cluster.url), RedisCluster)


def test_a_pass_sees_the_keys_of_every_primary(engine, redis_cluster, cluster_client):
    syncing.load_sample_playbooks(cluster_client, "playbook:", 3000)
    on_nodes = {cluster_client.get_node_from_key(f"playbook:PB-{n}").port for n in range(1, 3001)}
    result = syncing.sync_pass(engine, syncing.connect_redis(redis_cluster.url))
    assert len(on_nodes) == 3
    assert (result.complete, result.scanned, len(mirror_of(engine))) == (True, 3000, 3000)


def test_the_worker_follows_changes_on_every_primary(engine, redis_cluster, cluster_client, start_worker):
    running = start_worker(engine, redis_cluster.url, syncing.DEFAULT_PATTERN)
    assert eventually(lambda: running.log.events("subscribed") and running.log.events("reconciled"))
    assert running.log.events("subscribed")[0]["channels"] == 3
    keys = [f"playbook:PB-{n}" for n in range(1, 31)]
    for key in keys:
        cluster_client.set(key, playbook_value())
    started = time.monotonic()
    assert eventually(lambda: len(mirror_of(engine)) == 30, seconds=3)
    assert time.monotonic() - started < 3
