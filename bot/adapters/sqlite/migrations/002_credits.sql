-- Per-guild policy. One row per guild that changed anything; absent = the defaults in core/quotas.py.
CREATE TABLE guild_settings (
    guild_id                  INTEGER PRIMARY KEY,
    settings                  TEXT NOT NULL,   -- JSON of GuildPolicy fields that differ from defaults
    updated_at                REAL NOT NULL
);

-- A role gets another allowance and/or concurrency; the most generous of a member's roles wins.
CREATE TABLE role_overrides (
    guild_id        INTEGER NOT NULL,
    role_id         INTEGER NOT NULL,
    allowance       INTEGER,
    max_concurrent  INTEGER,
    PRIMARY KEY (guild_id, role_id)
);

-- Per-member state: an allowance set by a moderator (setquota) and the last manual reset.
CREATE TABLE member_quotas (
    guild_id        INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    allowance       INTEGER,
    reset_at        REAL,
    PRIMARY KEY (guild_id, user_id)
);

-- One-off grants, valid for the period they were granted in.
CREATE TABLE grants (
    id              INTEGER PRIMARY KEY,
    guild_id        INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    credits         INTEGER NOT NULL,
    granted_by      INTEGER NOT NULL,
    created_at      REAL NOT NULL
);
CREATE INDEX grants_member ON grants(guild_id, user_id, created_at);

-- Every moderator action, and every job outcome, for `jobs` and `usage`.
CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY,
    guild_id        INTEGER,
    actor_id        INTEGER,
    action          TEXT NOT NULL,
    target_user_id  INTEGER,
    job_id          INTEGER REFERENCES jobs(id),
    details         TEXT NOT NULL DEFAULT '{}',
    created_at      REAL NOT NULL
);
CREATE INDEX audit_guild ON audit_log(guild_id, created_at);

CREATE INDEX jobs_guild_created ON jobs(guild_id, created_at);
