-- Archived vehicle tracks (store/tracks.py): one row per vehicle per UTC hour holding that
-- hour's packed 20-byte track records (ingest/fixpack.py TRACK_RECORD: ms since the hour, lat,
-- lon, speed, course, altitude, quality, satellites), as the live track in Redis had them; not a
-- row per fix. Partitioned by UTC day: the archiver (services/track_archiver.py) creates the day
-- partitions track_hours_YYYYMMDD ahead and drops those older than TRACK_ARCHIVE_DAYS.
CREATE TABLE track_hours (
    vehicle_id    text NOT NULL,
    hour          timestamptz NOT NULL CHECK (extract(epoch FROM hour)::bigint % 3600 = 0),
    fixes         integer NOT NULL CHECK (fixes = octet_length(records) / 20),
    records       bytea NOT NULL CHECK (octet_length(records) % 20 = 0),
    source_bytes  integer NOT NULL CHECK (source_bytes >= 0),  -- the Redis string archived last
    archived_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vehicle_id, hour)
) PARTITION BY RANGE (hour);
