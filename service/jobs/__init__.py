"""Durable video jobs: long recordings classified asynchronously, surviving crashes.

One module per job:

- `settings`: the `jobs` settings group (ACTSERVE_JOBS_*);
- `db`: the tables (SQLAlchemy; SQLite by default, PostgreSQL when configured);
- `queue`: submit, claim under a lease, heartbeat, store chunks, finish, cancel;
- `serving`: the one adapter to the serving core (models, decode pool, batchers);
- `runner`: a job run chunk by chunk, resumed from its last stored chunk;
- `results`: the summary and the pages / JSON Lines of a finished job;
- `inputs`: where a job's video comes from (uploads; `file://` under allowed dirs);
- `metrics`, `service` (start/stop, retention), `routes` (/jobs), `worker` (no HTTP).
"""
