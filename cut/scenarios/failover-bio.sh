#: extends: failover
#: description: >-
#:   Failover on a bio-based map (queue_mode bio): dm-multipath maps and queues each bio
#:   itself instead of cloning requests, a code path of its own in dm-mpath.c
#:   (multipath_map_bio, process_queued_bios, multipath_end_io_bio). Failover's checks; per-path
#:   I/O is counted from the bios dm sends each path.
#: multipath: |
#:   defaults {
#:   	features "2 queue_mode bio"
#:   }
#: env: {MAP_TABLE_HAS: 'queue_mode bio'}
