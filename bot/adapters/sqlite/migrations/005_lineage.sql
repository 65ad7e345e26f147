-- Lineage: extensions and edits of finished videos (and edits of a member's uploaded clip).
-- kind: video | remix | extension | edit. For an extension, `seconds` is the requested new segment
-- (its price and ETA come from it) and total_seconds the delivered length (source + segment) from
-- the provider's answer. For an edit, `seconds` is the length it was priced at.
ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'video';
ALTER TABLE jobs ADD COLUMN source_video_id TEXT;  -- the provider's id of the video extended or edited
ALTER TABLE jobs ADD COLUMN clip_path TEXT;  -- the converted clip an edit starts from (DATA_DIR/references)
ALTER TABLE jobs ADD COLUMN total_seconds INTEGER;
UPDATE jobs SET kind = 'remix' WHERE remixed_from_video_id IS NOT NULL;
