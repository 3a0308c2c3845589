-- imgindex schema. This file is the one source of the index's schema: a new
-- index is created by running it whole, and PRAGMA user_version records which
-- version it is. When it changes, bump SCHEMA_VERSION in
-- imgindex/storage/database.py and add a migration there that brings an index
-- of the previous version to this.
--
-- Paths are stored as raw bytes (os.fsencode), never decoded: crawl dumps
-- hold names that are not UTF-8.

-- A tree that has been scanned. Reports span every root in the index.
CREATE TABLE IF NOT EXISTS roots (
    id          INTEGER PRIMARY KEY,
    path        BLOB NOT NULL UNIQUE,   -- absolute, as given (symlinks not resolved)
    added_at    REAL NOT NULL,          -- unix time
    last_scan   INTEGER REFERENCES scans(id) ON DELETE SET NULL
);

-- Every directory met under a root, with the outcome of its last listing.
CREATE TABLE IF NOT EXISTS dirs (
    -- AUTOINCREMENT: an id is never reused, so a stale id held by another
    -- process fails instead of naming a different directory.
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    root_id     INTEGER NOT NULL REFERENCES roots(id) ON DELETE CASCADE,
    path        BLOB NOT NULL UNIQUE,
    error       TEXT,                   -- why it could not be listed, NULL when it could
    listed_at   REAL                    -- unix time of the last successful listing
);
CREATE INDEX IF NOT EXISTS dirs_root ON dirs(root_id);

-- Settings that produce perceptual hashes. A row's hash is current only when
-- its params_id names the settings in use; otherwise the next scan recomputes
-- the perceptual hash (the exact hash stays).
CREATE TABLE IF NOT EXISTS hash_params (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE,   -- canonical JSON of the settings and versions
    created_at  REAL NOT NULL
);

-- Every file met under a root, image or not, so that a rescan never re-reads a
-- file whose stat data has not changed.
CREATE TABLE IF NOT EXISTS files (
    id          INTEGER PRIMARY KEY,
    dir_id      INTEGER NOT NULL REFERENCES dirs(id) ON DELETE CASCADE,
    name        BLOB NOT NULL,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    ctime_ns    INTEGER NOT NULL,
    inode       INTEGER NOT NULL,
    device      INTEGER NOT NULL,
    -- ok | not_image | empty | truncated | corrupt | unsupported | too_large | unreadable
    status      TEXT NOT NULL,
    error       TEXT,                   -- the reason, for every status but ok and not_image
    format      TEXT,                   -- detected from content: JPEG, PNG, GIF, WEBP, ...
    sha256      BLOB,                   -- 32 bytes, for every file recognised as an image
    width       INTEGER,
    height      INTEGER,
    phash       INTEGER,                -- 64-bit perceptual hash (dHash), stored as a signed integer
    params_id   INTEGER REFERENCES hash_params(id),
    read_ns     INTEGER NOT NULL,       -- wall clock when the file was read (racy-clean check)
    first_seen  REAL NOT NULL,          -- unix time; last seen is its directory's listed_at
    -- The perceptual hash of the picture inside its uniform border, NULL when it
    -- has none (added in version 3, so it comes last).
    trim_hash   INTEGER,
    -- Where the item was fetched from, when the index knows it: a web archive
    -- record's target URI, or what a crawler's side-file says (provenance
    -- below) (added in version 6, so it comes last).
    url         TEXT,
    UNIQUE (dir_id, name)
);
CREATE INDEX IF NOT EXISTS files_sha256 ON files(sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX IF NOT EXISTS files_status ON files(status);
CREATE INDEX IF NOT EXISTS files_phash ON files(phash) WHERE phash IS NOT NULL;
CREATE INDEX IF NOT EXISTS files_trim_hash ON files(trim_hash) WHERE trim_hash IS NOT NULL;

-- Web archives (WARC, ARC) under a root. An archive is a dirs row whose path
-- is the archive file's and whose files are its image records, each named by
-- its offset in the archive (a record's path is ARCHIVE#OFFSET). The archive's
-- identity and where its listing stopped are recorded once every record
-- listed before that offset has its row, so an unchanged archive is not read
-- again, and one that only grew is read from there; until then (a scan
-- stopped early) they are NULL and the next scan lists it again.
CREATE TABLE IF NOT EXISTS archives (
    dir_id      INTEGER PRIMARY KEY REFERENCES dirs(id) ON DELETE CASCADE,
    size        INTEGER,                -- the archive file's stat data when it was listed
    mtime_ns    INTEGER,
    ctime_ns    INTEGER,
    inode       INTEGER,
    read_to     INTEGER,                -- the offset after its last whole record then
    tail        BLOB,                   -- SHA-256 of the 4 KiB before read_to: an append keeps it
    damaged     INTEGER NOT NULL DEFAULT 0  -- records found damaged (listed as corrupt entries)
);

-- URLs that a crawler's side-files give for files: Nutch's FileDumper writes
-- one <segment>_filenameToUrl.json per segment in its output directory, from
-- each written file's absolute path to its URL (imgindex/provenance.py).
-- side_id is the side-file's own row, so its URLs go when it changes or goes.
-- files.url follows these rows (triggers below): the URL from the side-file
-- whose name sorts last (segments are named by time: the latest fetch).
CREATE TABLE IF NOT EXISTS provenance (
    dir         BLOB NOT NULL,          -- the file's directory (a dirs.path), as it is now
    name        BLOB NOT NULL,
    side_id     INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    PRIMARY KEY (dir, name, side_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS provenance_side ON provenance(side_id);
-- The side-files whose URLs are in provenance, as of which reading of them
-- (files.read_ns): one changed since, or not read yet (a scan stopped before
-- it got there, a read that failed), is read by the next scan.
CREATE TABLE IF NOT EXISTS side_files (
    file_id     INTEGER PRIMARY KEY REFERENCES files(id) ON DELETE CASCADE,
    read_ns     INTEGER NOT NULL
);
-- The URL each file named by side-files gets: the one from the side-file whose
-- name sorts last (the latest segment), ties by the later row.
CREATE VIEW IF NOT EXISTS provenance_urls AS
    SELECT p.dir AS dir, p.name AS name, p.url AS url
    FROM provenance p JOIN files s ON s.id = p.side_id
    WHERE NOT EXISTS (
        SELECT 1 FROM provenance q JOIN files t ON t.id = q.side_id
        WHERE q.dir = p.dir AND q.name = p.name AND (t.name > s.name OR (t.name = s.name AND t.id > s.id)));
CREATE TRIGGER IF NOT EXISTS provenance_insert AFTER INSERT ON provenance
BEGIN
    UPDATE files SET url = (SELECT url FROM provenance_urls WHERE dir = new.dir AND name = new.name)
    WHERE dir_id = (SELECT id FROM dirs WHERE path = new.dir) AND name = new.name;
END;
CREATE TRIGGER IF NOT EXISTS provenance_delete AFTER DELETE ON provenance
BEGIN
    UPDATE files SET url = (SELECT url FROM provenance_urls WHERE dir = old.dir AND name = old.name)
    WHERE dir_id = (SELECT id FROM dirs WHERE path = old.dir) AND name = old.name;
END;
-- A file that side-files named before it was indexed gets its URL when it is.
CREATE TRIGGER IF NOT EXISTS files_url_insert AFTER INSERT ON files
    WHEN new.url IS NULL AND EXISTS (SELECT 1 FROM provenance LIMIT 1)
BEGIN
    UPDATE files SET url = (
        SELECT url FROM provenance_urls
        WHERE dir = (SELECT path FROM dirs WHERE id = new.dir_id) AND name = new.name)
    WHERE id = new.id;
END;

-- Tiny thumbnails of each hashed image (see imgindex/hashing.py: descriptor), read
-- by near reports to verify hash matches. Apart from files so that the rows a
-- report walks stay small; only the images that have a near match are read.
CREATE TABLE IF NOT EXISTS descriptors (
    file_id     INTEGER PRIMARY KEY REFERENCES files(id) ON DELETE CASCADE,
    picture     BLOB NOT NULL,          -- of the whole picture
    trimmed     BLOB,                   -- of the picture inside its border, when files.trim_hash is set
    -- The 32x32 grey thumbnail of the inside (of the whole picture without a border), from
    -- which the thumbnails of its regions (below) are cut to verify a match found by one.
    grid        BLOB
);

-- The dHash values of regions of each image's inside (or of the whole picture without a
-- border): its middle 90 %, and it with 12 % cut off the bottom, top, left, right (5
-- big-endian 64-bit numbers in one blob; imgindex/hashing.py: REGIONS); no row for a
-- picture under 16 pixels a side. A narrow table of its own: every update of the matches
-- reads all of them (a new picture's hashes against every stored region).
CREATE TABLE IF NOT EXISTS regions (
    file_id     INTEGER PRIMARY KEY REFERENCES files(id) ON DELETE CASCADE,
    hashes      BLOB NOT NULL           -- 40 bytes
);
-- The regions' hashes kept as columns: a chunk of 65,536 file ids (file_id >> 16) a
-- row, for the chunks whose ids are all below the highest file id (every update of the
-- matches reads every region: a million rows cost half a second, their chunks' blobs a
-- twentieth; imgindex/storage/region_table.py). Derived data: the triggers below drop a
-- chunk in the same transaction as any write to one of its rows (cascades included), so
-- a chunk here is never stale; each scan and watch makes the missing ones again, and the
-- others are read row by row meanwhile.
CREATE TABLE IF NOT EXISTS region_columns (
    chunk       INTEGER PRIMARY KEY,    -- file ids chunk << 16 to (chunk << 16) + 65535
    rows        INTEGER NOT NULL,       -- the files of the chunk with regions' hashes
    ids         BLOB NOT NULL,          -- their ids, int64 (little-endian), ascending
    hashes      BLOB NOT NULL           -- their regions.hashes, in the same order
);
CREATE TRIGGER IF NOT EXISTS regions_columns_insert AFTER INSERT ON regions
BEGIN
    DELETE FROM region_columns WHERE chunk = new.file_id >> 16;
END;
CREATE TRIGGER IF NOT EXISTS regions_columns_update AFTER UPDATE ON regions
BEGIN
    DELETE FROM region_columns WHERE chunk IN (old.file_id >> 16, new.file_id >> 16);
END;
CREATE TRIGGER IF NOT EXISTS regions_columns_delete AFTER DELETE ON regions
BEGIN
    DELETE FROM region_columns WHERE chunk = old.file_id >> 16;
END;

-- One row per scan: when it ran, on which roots, what it found.
CREATE TABLE IF NOT EXISTS scans (
    id          INTEGER PRIMARY KEY,
    started_at  REAL NOT NULL,
    finished_at REAL,
    roots       TEXT NOT NULL,          -- JSON list of root paths (display form)
    state       TEXT NOT NULL,          -- running | done | interrupted | failed
    files       INTEGER NOT NULL DEFAULT 0,
    new         INTEGER NOT NULL DEFAULT 0,
    changed     INTEGER NOT NULL DEFAULT 0,
    unchanged   INTEGER NOT NULL DEFAULT 0,
    removed     INTEGER NOT NULL DEFAULT 0,
    hashed      INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    walk_errors INTEGER NOT NULL DEFAULT 0,
    seconds     REAL
);

-- Near pairs, kept up to date by scan and watch so that a near report is a
-- query: every two distinct perceptual hashes of indexed images (phash or
-- trim_hash) of one kind that differ in at most meta.near_max_distance bits.
-- Pairs are between hash values, not files, so a thousand copies of one
-- picture cost one hash. near_hashes lists the values whose pairs are all
-- stored; a value in files but not here (a scan stopped before updating the
-- pairs) is searched by the next update, or in memory by a report meanwhile.
-- kind names the hash (imgindex/kinds.py): values of two kinds never pair.
CREATE TABLE IF NOT EXISTS near_hashes (
    kind        TEXT NOT NULL,          -- the kind of hash, e.g. dhash
    hash        INTEGER NOT NULL,       -- a files.phash or files.trim_hash value
    PRIMARY KEY (kind, hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS near_pairs (
    kind        TEXT NOT NULL,
    a           INTEGER NOT NULL,       -- the smaller hash (as a signed integer)
    b           INTEGER NOT NULL,
    distance    INTEGER NOT NULL,       -- Hamming distance, 1 to meta.near_max_distance
    PRIMARY KEY (kind, a, b)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS near_pairs_b ON near_pairs(kind, b);
-- near_hashes of a kind kept as one blob (imgindex/storage/pairstore.py), which
-- every update reads instead of its rows (a million values: 8 ms against 230),
-- and the writes to near_hashes since it was made, logged by the triggers below
-- (whoever writes, so blob and log always hold what near_hashes holds). An update
-- makes the blob again once the log is long. Derived data: dropped with the pairs.
CREATE TABLE IF NOT EXISTS near_hashes_kept (
    kind        TEXT PRIMARY KEY,
    count       INTEGER NOT NULL,       -- the values in hashes
    hashes      BLOB NOT NULL           -- int64, little-endian, ascending
);
CREATE TABLE IF NOT EXISTS near_hashes_log (
    seq         INTEGER PRIMARY KEY,    -- in the order written
    kind        TEXT NOT NULL,
    hash        INTEGER NOT NULL,
    present     INTEGER NOT NULL        -- 1: inserted, 0: deleted
);
CREATE TRIGGER IF NOT EXISTS near_hashes_log_insert AFTER INSERT ON near_hashes
    WHEN EXISTS (SELECT 1 FROM near_hashes_kept WHERE kind = new.kind)
BEGIN
    INSERT INTO near_hashes_log (kind, hash, present) VALUES (new.kind, new.hash, 1);
END;
CREATE TRIGGER IF NOT EXISTS near_hashes_log_delete AFTER DELETE ON near_hashes
    WHEN EXISTS (SELECT 1 FROM near_hashes_kept WHERE kind = old.kind)
BEGIN
    INSERT INTO near_hashes_log (kind, hash, present) VALUES (old.kind, old.hash, 0);
END;
CREATE TRIGGER IF NOT EXISTS near_hashes_log_update AFTER UPDATE ON near_hashes
BEGIN
    DELETE FROM near_hashes_kept WHERE kind IN (old.kind, new.kind);
END;

-- Verified near matches, kept up to date with the near pairs, so that a near
-- report is a query: every two pictures whose hashes (of the whole picture, or
-- of what is inside their borders, or one's inside and the other's whole
-- picture: near_matches.inside holds the nearer of those two) are within
-- meta.near_max_distance bits and whose thumbnails confirm the match
-- (imgindex/match/verify.py). A picture is
-- an image's content: its key is the first 8 bytes of its SHA-256 (as a signed
-- integer); pictures whose keys collide are never stored. near_pictures lists
-- the pictures whose matches are all stored, made under the hash settings
-- meta.near_params; a picture not there (new, hashed by other settings) is
-- verified in memory by a report meanwhile. Pairs the thumbnails refuse are
-- not stored: nothing asks for them.
CREATE TABLE IF NOT EXISTS near_pictures (
    kind        TEXT NOT NULL,          -- the kind of hash, e.g. dhash
    picture     INTEGER NOT NULL,       -- the key of a files.sha256
    PRIMARY KEY (kind, picture)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS near_matches (
    kind        TEXT NOT NULL,
    a           INTEGER NOT NULL,       -- the smaller picture key
    b           INTEGER NOT NULL,
    whole       INTEGER,                -- distance of the whole pictures' hashes, when that match holds
    inside      INTEGER,                -- distance of their insides' hashes, when that match holds
    region      INTEGER,                -- distance of a region's hash of one (regions.hashes) and
                                        -- the other's whole or inside, when such a match holds
    PRIMARY KEY (kind, a, b)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS near_matches_b ON near_matches(kind, b);

-- Mirrored and turned copies (report --rotations), once 'imgindex pairs --rotations'
-- has set meta.near_rotations: their verified matches are in near_matches under
-- the kind '<kind>/turned' (whole: the distance between one's upright hash and
-- an orientation's of the other's, of the whole pictures or of their insides,
-- whichever is nearer and verified; inside unused), near_pictures lists the
-- pictures whose such matches are all stored under that kind too, and here are
-- the hashes of each picture's thumbnail in its 8 orientations (identity first,
-- 8 big-endian 64-bit numbers in one blob; for a picture with a border, 8 more:
-- its inside's), so that an update finds the orientation matches of new
-- pictures without reading every thumbnail again.
CREATE TABLE IF NOT EXISTS near_orientations (
    kind        TEXT NOT NULL,          -- the kind of hash, e.g. dhash
    picture     INTEGER NOT NULL,       -- the key of a files.sha256
    hashes      BLOB NOT NULL,          -- 64 bytes
    PRIMARY KEY (kind, picture)
) WITHOUT ROWID;

-- Pictures whose stored matches may be out of date: every write of an image's
-- row puts its SHA-256 here, the old one too when it changes or goes (the
-- triggers below, so no way of writing files is missed, cascades included).
-- The next update of the matches verifies them again, or forgets them when
-- no file has them any more, then clears the rows it has done; a report
-- treats them as not stored meanwhile.
CREATE TABLE IF NOT EXISTS near_pending (
    -- AUTOINCREMENT: a number is never used twice, so an update that clears the
    -- rows up to the last one it read never clears a later write's.
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256      BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS files_pending_insert AFTER INSERT ON files
    WHEN new.sha256 IS NOT NULL
BEGIN
    INSERT INTO near_pending (sha256) VALUES (new.sha256);
END;
CREATE TRIGGER IF NOT EXISTS files_pending_update AFTER UPDATE OF sha256, phash, trim_hash, params_id ON files
BEGIN
    INSERT INTO near_pending (sha256) SELECT old.sha256 WHERE old.sha256 IS NOT NULL;
    INSERT INTO near_pending (sha256) SELECT new.sha256 WHERE new.sha256 IS NOT NULL AND new.sha256 IS NOT old.sha256;
END;
CREATE TRIGGER IF NOT EXISTS files_pending_delete AFTER DELETE ON files
    WHEN old.sha256 IS NOT NULL
BEGIN
    INSERT INTO near_pending (sha256) VALUES (old.sha256);
END;

-- The image table (what every report, review and export reads) kept as columns: a
-- chunk of 65,536 file ids (id >> 16) a row, for the chunks whose ids are all
-- below the highest one (imgindex/storage/table.py). Derived data: the triggers
-- below drop a chunk in the same transaction as any write to a column the table
-- reads of one of its files (cascades included), so a chunk here is never stale;
-- each scan and watch makes the missing ones again, and a report reads those
-- row by row meanwhile.
CREATE TABLE IF NOT EXISTS image_columns (
    chunk        INTEGER PRIMARY KEY,   -- file ids chunk << 16 to (chunk << 16) + 65535
    layout       INTEGER NOT NULL,      -- of the blobs (storage/table.py LAYOUT); another one is made again
    rows         INTEGER NOT NULL,      -- the images among those files
    numbers      BLOB NOT NULL,         -- int64 columns (little-endian), one after another, by id
    digests      BLOB NOT NULL,         -- the SHA-256s, 32 bytes a row
    names        BLOB NOT NULL,         -- joined by NUL
    name_lengths BLOB,                  -- int64 each, only when a name holds a NUL
    urls         BLOB NOT NULL,         -- of the rows with one, joined by NUL
    url_lengths  BLOB                   -- int64 each, only when a URL holds a NUL
);
CREATE TRIGGER IF NOT EXISTS files_columns_insert AFTER INSERT ON files
BEGIN
    DELETE FROM image_columns WHERE chunk = new.id >> 16;
END;
CREATE TRIGGER IF NOT EXISTS files_columns_update
    AFTER UPDATE OF id, dir_id, name, size, mtime_ns, format, sha256, width, height, phash, params_id, trim_hash, url
    ON files
BEGIN
    DELETE FROM image_columns WHERE chunk IN (old.id >> 16, new.id >> 16);
END;
CREATE TRIGGER IF NOT EXISTS files_columns_delete AFTER DELETE ON files
BEGIN
    DELETE FROM image_columns WHERE chunk = old.id >> 16;
END;

-- Settings of the index as a whole (near_max_distance, near_generation, near_params, near_rotations, ...).
CREATE TABLE IF NOT EXISTS meta (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);

-- Full paths, for queries and reports: an archive's records are ARCHIVE#OFFSET.
CREATE VIEW IF NOT EXISTS file_paths AS
    SELECT files.*, dirs.root_id AS root_id, dirs.listed_at AS last_seen,
           CAST(CASE WHEN archives.dir_id IS NOT NULL THEN dirs.path || X'23' || files.name
                     WHEN dirs.path = X'2F' THEN X'2F' || files.name
                     ELSE dirs.path || X'2F' || files.name END AS BLOB) AS path
    FROM files JOIN dirs ON dirs.id = files.dir_id LEFT JOIN archives ON archives.dir_id = dirs.id;

-- Review decisions (imgindex review): what a person decided about duplicates,
-- by content (SHA-256), never by path, so that they survive rescans, renames
-- and moves, and stay harmless when the files are gone. Each request that
-- decides is one batch, undone as one. Decisions are never changed: a later
-- one about the same images overrides an earlier one; an undone batch's
-- decisions count for nothing.
CREATE TABLE IF NOT EXISTS review_batches (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    made_at     REAL NOT NULL,          -- Unix time
    summary     TEXT NOT NULL,          -- what was done, shown where it can be undone
    undone_at   REAL                    -- NULL: in force
);
CREATE TABLE IF NOT EXISTS review_decisions (
    batch_id    INTEGER NOT NULL REFERENCES review_batches(id) ON DELETE CASCADE,
    -- keep: keep this picture (sha256) when it is in a group, and of its identical
    --       copies the one at path (NULL: by the usual rules);
    -- apart: the two pictures (sha256 < other) are not duplicates of each other;
    -- same: they are (a group accepted as it is; sha256 = other: the identical
    --       copies of one picture).
    kind        TEXT NOT NULL CHECK (kind IN ('keep', 'apart', 'same')),
    sha256      BLOB NOT NULL,
    other       BLOB NOT NULL DEFAULT X'',  -- apart, same: the other picture; keep: empty
    path        BLOB,
    CHECK ((kind = 'keep') = (other = X'')),
    CHECK (kind = 'keep' OR sha256 < other OR (kind = 'same' AND sha256 = other))
);
CREATE INDEX IF NOT EXISTS review_decisions_batch ON review_decisions(batch_id);
