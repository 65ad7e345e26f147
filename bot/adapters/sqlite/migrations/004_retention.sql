-- What the hourly retention pass (bot.services.retention) looks rows up by.
CREATE INDEX jobs_finished_at ON jobs(finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_token_expiry ON jobs(token_expires_at) WHERE interaction_token IS NOT NULL;
CREATE INDEX audit_created ON audit_log(created_at);
CREATE INDEX grants_created ON grants(created_at);
