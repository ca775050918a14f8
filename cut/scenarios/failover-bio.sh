#: extends: failover
#: description: >-
#:   Failover on a bio-based map (queue_mode bio): dm-multipath maps and queues each bio
#:   itself instead of cloning requests, a code path of its own in dm-mpath.c
#:   (multipath_map_bio, process_queued_bios, multipath_end_io_bio). Failover's checks; per-path
#:   I/O is counted from the bios dm sends each path. rr_min_io 1: round-robin's repeat count
#:   for bios (rr_min_io_rq is the requests' one); at its default, 1000, every bio of the
#:   writer in flight could go to the path the fault spares, and none meet the failed one.
#: multipath: |
#:   defaults {
#:   	features "2 queue_mode bio"
#:   	rr_min_io 1
#:   }
#: env: {MAP_TABLE_HAS: 'queue_mode bio'}
