-- Standard Webhooks ids the bot has accepted, kept for the replay window (a few minutes) so that a
-- replay is recognised across restarts; older rows are pruned as new ids arrive.
CREATE TABLE webhook_events (
    id       TEXT PRIMARY KEY,
    seen_at  REAL NOT NULL
);
CREATE INDEX webhook_events_seen_at ON webhook_events(seen_at);
