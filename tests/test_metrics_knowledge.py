"""Knowledge-entry metrics of metrics.md."""

from __future__ import annotations

from tests.platform import AS_OF, MINUTE, TAIPEI_MIDNIGHT, add_knowledge_entry, refresh


def test_vectorized_rate_is_zero_without_knowledge_entries(connection):
    summary = refresh(connection)
    assert (summary["km_vectorized_rate"], summary["km_unvectorized_count"]) == (0, 0)


def test_entries_without_embedding_are_unvectorized(connection):
    add_knowledge_entry(connection, vectorized=False)
    for _ in range(3):
        add_knowledge_entry(connection)
    summary = refresh(connection)
    assert (summary["km_vectorized_rate"], summary["km_unvectorized_count"]) == (0.75, 1)


def test_conversions_today_start_at_taipei_midnight(connection):
    add_knowledge_entry(connection, created_at=TAIPEI_MIDNIGHT)
    add_knowledge_entry(connection, created_at=TAIPEI_MIDNIGHT - MINUTE)
    add_knowledge_entry(connection, created_at=AS_OF)
    assert refresh(connection)["flywheel_conversions_today"] == 2
