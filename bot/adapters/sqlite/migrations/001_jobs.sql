-- Jobs: everything needed to finish a job after a restart.
CREATE TABLE jobs (
    id                    INTEGER PRIMARY KEY,
    guild_id              INTEGER,
    channel_id            INTEGER NOT NULL,
    user_id               INTEGER NOT NULL,
    user_name             TEXT NOT NULL DEFAULT '',
    prompt                TEXT NOT NULL,
    model                 TEXT NOT NULL,
    size                  TEXT NOT NULL,
    seconds               INTEGER NOT NULL,
    cost                  INTEGER NOT NULL,
    usd                   REAL NOT NULL DEFAULT 0,
    -- pending → submitting → queued → in_progress → downloading → uploading → completed
    --                                              ↘ failed / cancelled (from any active state)
    status                TEXT NOT NULL DEFAULT 'pending',
    charge_state          TEXT NOT NULL DEFAULT 'reserved',  -- reserved | charged | refunded
    progress              INTEGER NOT NULL DEFAULT 0,
    provider_video_id     TEXT,
    provider_status       TEXT,
    source_job_id         INTEGER REFERENCES jobs(id),
    remixed_from_video_id TEXT,
    reference_image_path  TEXT,
    media_path            TEXT,
    error_code            TEXT,
    error_message         TEXT,
    application_id        INTEGER,
    interaction_token     TEXT,
    token_expires_at      REAL,
    reply_message_id      INTEGER,
    delivered_message_id  INTEGER,
    upload_limit          INTEGER,
    created_at            REAL NOT NULL,
    submitted_at          REAL,
    started_at            REAL,
    generated_at          REAL,
    finished_at           REAL,
    updated_at            REAL NOT NULL
);
CREATE UNIQUE INDEX jobs_provider_video_id ON jobs(provider_video_id) WHERE provider_video_id IS NOT NULL;
CREATE INDEX jobs_active ON jobs(status) WHERE status NOT IN ('completed', 'failed', 'cancelled');
CREATE INDEX jobs_user ON jobs(guild_id, user_id, created_at);

-- Small key/value facts the bot keeps between runs (e.g. the hash of the synced command tree).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
