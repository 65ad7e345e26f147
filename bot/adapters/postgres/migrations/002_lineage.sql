-- Lineage (mirrors SQLite 005_lineage.sql): extensions and edits of finished videos (and edits of a
-- member's uploaded clip). kind: video | remix | extension | edit. For an extension, `seconds` is
-- the requested new segment (its price and ETA come from it) and total_seconds the delivered length
-- (source + segment) from the provider's answer. For an edit, `seconds` is the length it was priced at.
ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'video';
ALTER TABLE jobs ADD COLUMN source_video_id TEXT;
ALTER TABLE jobs ADD COLUMN clip_path TEXT;
ALTER TABLE jobs ADD COLUMN total_seconds BIGINT;
UPDATE jobs SET kind = 'remix' WHERE remixed_from_video_id IS NOT NULL;
