-- Members' fitted starting images, by file name, so any process (its own DATA_DIR may not have the
-- file) can send it to the provider or make the job again. The file under DATA_DIR/references is
-- this process's copy; retention deletes both together.
CREATE TABLE reference_images (
    name        TEXT PRIMARY KEY,
    data        BLOB NOT NULL,
    created_at  REAL NOT NULL
);
CREATE INDEX reference_images_created ON reference_images(created_at);
