-- refget looks sequences up by MD5 or GA4GH digest, only ever by equality. As B-trees these two
-- global indexes took random inserts of 32- and 35-byte keys for every record COPYed: measured
-- here, they tripled the time to load 1M records into a table holding 3M (8.4 s without them,
-- 26.5 s with them); as hash indexes (a 4-byte hash code per entry) 14.2 s.
DROP INDEX IF EXISTS sequence_records_by_md5;
DROP INDEX IF EXISTS sequence_records_by_refget;
CREATE INDEX sequence_records_by_md5 ON sequence_records USING hash (md5);
CREATE INDEX sequence_records_by_refget ON sequence_records USING hash (refget);
