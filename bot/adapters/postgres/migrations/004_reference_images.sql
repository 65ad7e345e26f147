-- = SQLite 008: members' fitted starting images, by file name, readable by every process.
CREATE TABLE reference_images (
    name        TEXT PRIMARY KEY,
    data        BYTEA NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL
);
CREATE INDEX reference_images_created ON reference_images(created_at);
