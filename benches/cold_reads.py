#!/usr/bin/env python3
"""Count the disk reads each step of a dry run needs on a cold cache (needs root).

    benches/cold_reads.py ROOT [DEVICE]

ROOT is a registry storage root (the directory holding docker/registry/v2), DEVICE the block
device under it as named in /proc/diskstats (default: vda). The page cache is dropped once;
then the steps a collection takes run one after another, single-threaded, and each prints
the reads the kernel issued for it (from /proc/diskstats), so later steps profit from what
earlier ones cached, as in a real run. The table in BENCHMARKS.md comes from this script.
"""
import os
import sys

root = os.path.join(sys.argv[1], "docker/registry/v2")
device = sys.argv[2] if len(sys.argv) > 2 else "vda"


def reads():
    for line in open("/proc/diskstats"):
        f = line.split()
        if f[2] == device:
            return int(f[3])
    sys.exit(f"cold_reads.py: no device {device} in /proc/diskstats")


last = reads()


def report(label):
    global last
    now = reads()
    print(f"{label:48s} {now - last:8d} reads")
    last = now


os.system("sync; echo 3 > /proc/sys/vm/drop_caches")
last = reads()

repos = []


def walk(path, name):
    for e in os.scandir(path):
        if e.name == "_manifests":
            repos.append(name)
        elif not e.name.startswith("_") and e.is_dir(follow_symlinks=False):
            walk(e.path, f"{name}/{e.name}" if name else e.name)


walk(os.path.join(root, "repositories"), "")
report(f"walk repositories/ ({len(repos)} repositories)")

shards = os.path.join(root, "blobs/sha256")
for s in os.listdir(shards):
    os.listdir(os.path.join(shards, s))
report("list the blob shards")

tags = 0
for r in repos:
    d = os.path.join(root, "repositories", r, "_manifests/tags")
    for t in os.listdir(d):
        open(os.path.join(d, t, "current/link"), "rb").read()
        tags += 1
report(f"read {tags} tag links")

revisions = {}
for r in repos:
    revisions[r] = os.listdir(os.path.join(root, "repositories", r, "_manifests/revisions/sha256"))
report("list _manifests/revisions/sha256/")

manifests = set()
for r, digests in revisions.items():
    for h in digests:
        try:
            with open(os.path.join(root, "repositories", r, "_manifests/revisions/sha256", h, "link"), "rb") as f:
                manifests.add(f.read().decode().strip().split(":", 1)[1])
        except FileNotFoundError:
            pass  # a deleted manifest: the registry removes the link and leaves the directory
report(f"read {sum(map(len, revisions.values()))} revision links")

for r in repos:
    os.listdir(os.path.join(root, "repositories", r, "_layers/sha256"))
report("list _layers/sha256/")

for h in manifests:
    open(os.path.join(shards, h[:2], h, "data"), "rb").read()
report(f"read {len(manifests)} manifests")
