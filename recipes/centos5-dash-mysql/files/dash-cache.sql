-- Schema of the DASH cache: a read-only replica the site's jobs query.
CREATE DATABASE IF NOT EXISTS dash;
GRANT SELECT ON dash.* TO 'dash'@'%';
