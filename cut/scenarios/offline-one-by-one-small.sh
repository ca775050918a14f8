#: extends: offline-one-by-one
#: description: offline-one-by-one on one LUN with two paths, the smallest topology it has.
#: topology: {luns: 1, paths: 2}
