from tests.platform import AS_OF, add_incident, refresh


def test_refresh_on_empty_tables_gives_zero_counts_and_no_rate(connection):
    summary = refresh(connection)
    assert summary["playbook_count"] == 0
    assert summary["execution_success_rate"] is None


def test_one_incident_created_today_counts_as_processed(connection):
    add_incident(connection, created_at=AS_OF)
    assert refresh(connection)["today_processed"] == 1
