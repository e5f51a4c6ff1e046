//! A seeded synthetic-registry generator, for benchmarks and large-scale tests.
//!
//! Writes the layout the registry writes (blobs, revision links, tag `current` and `index`
//! links, layer links, upload directories) straight to disk, with tiny blob payloads so that
//! size on disk is dominated by the tree, as it is for the metadata walk of a real registry.
//! The same seed and preset always produce the same tree.
//!
//! Each repository gets `tags` images of `layers` layers, one or two of them shared base
//! layers from a global pool; some tags are multi-arch indexes, some were retagged (the old
//! image stays as an untagged revision), some images have an SBOM referrer, some manifests were
//! deleted through the API (revision link gone, blob kept), and some blobs were uploaded and
//! never used.

use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::registry::digest::{Algorithm, Digest};
use crate::registry::layout;

/// A named size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub repositories: usize,
    pub tags: usize,
    pub layers: usize,
}

/// ~20 repositories: quick enough for criterion's many iterations.
pub const SMALL: Preset = Preset {
    name: "small",
    repositories: 20,
    tags: 10,
    layers: 5,
};

/// The size the issue measures the reference against: 2,000 repositories x 10 tags x 5 layers,
/// ~33,000 manifests, ~150,000 blobs, ~350,000 files.
pub const MEDIUM: Preset = Preset {
    name: "medium",
    repositories: 2_000,
    tags: 10,
    layers: 5,
};

/// Ten times medium.
pub const LARGE: Preset = Preset {
    name: "large",
    repositories: 20_000,
    tags: 10,
    layers: 5,
};

/// The object-storage benchmark: about 20,000 keys, which a single-process S3 test server
/// (moto) loads in minutes and lists in seconds.
pub const BUCKET: Preset = Preset {
    name: "bucket",
    repositories: 100,
    tags: 10,
    layers: 5,
};

pub const PRESETS: [Preset; 4] = [SMALL, MEDIUM, LARGE, BUCKET];

pub fn preset(name: &str) -> Option<Preset> {
    PRESETS.iter().copied().find(|p| p.name == name)
}

/// How many shared base layers all repositories draw from.
const BASE_LAYERS: usize = 50;

/// What a generated registry holds, for reports and sanity checks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub repositories: usize,
    pub tags: usize,
    pub manifests: usize,
    pub blobs_written: usize,
}

impl std::ops::Add for Stats {
    type Output = Stats;
    fn add(self, o: Stats) -> Stats {
        Stats {
            repositories: self.repositories + o.repositories,
            tags: self.tags + o.tags,
            manifests: self.manifests + o.manifests,
            blobs_written: self.blobs_written + o.blobs_written,
        }
    }
}

/// splitmix64: a tiny, well-distributed, seedable generator (no dependency needed for this).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Writer {
    root: PathBuf,
}

impl Writer {
    fn write(&self, key: &str, content: &[u8]) -> io::Result<()> {
        let path = self.root.join(key);
        match std::fs::write(&path, content) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(path.parent().expect("keys have parents"))?;
                std::fs::write(&path, content)
            }
            other => other,
        }
    }

    fn blob(&self, content: &[u8]) -> io::Result<Digest> {
        let d = Digest::of(Algorithm::Sha256, content);
        self.write(&layout::blob_data(&d), content)?;
        Ok(d)
    }

    fn link(&self, key: &str, d: &Digest) -> io::Result<()> {
        self.write(key, d.to_string().as_bytes())
    }
}

fn descriptor(media_type: &str, d: &Digest, size: usize) -> String {
    format!(r#"{{"mediaType":"{media_type}","digest":"{d}","size":{size}}}"#)
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A blob payload: small, unique per name.
fn payload(name: &str) -> Vec<u8> {
    format!("regsweep synthetic blob {name}\n").into_bytes()
}

struct RepoGen<'a> {
    w: &'a Writer,
    name: String,
    rng: Rng,
    base: &'a [(Digest, usize)],
    layers: usize,
    stats: Stats,
}

impl RepoGen<'_> {
    fn layer(&mut self, d: &Digest) -> io::Result<()> {
        self.w.link(&layout::layer_link(&self.name, d), d)
    }

    /// Upload an image's blobs and push its manifest; returns (digest, size).
    fn image(
        &mut self,
        id: &str,
        subject: Option<(&Digest, usize)>,
    ) -> io::Result<(Digest, usize)> {
        let mut layers = Vec::with_capacity(self.layers);
        let shared = 1 + self.rng.below(2);
        for i in 0..self.layers {
            let (d, size) = if i < shared {
                self.base[self.rng.below(self.base.len())].clone()
            } else {
                let p = payload(&format!("{}/{id}/layer{i}", self.name));
                self.stats.blobs_written += 1;
                (self.w.blob(&p)?, p.len())
            };
            self.layer(&d)?;
            layers.push(descriptor(
                "application/vnd.oci.image.layer.v1.tar+gzip",
                &d,
                size,
            ));
        }
        let config = payload(&format!("{}/{id}/config", self.name));
        let config_digest = self.w.blob(&config)?;
        self.stats.blobs_written += 1;
        self.layer(&config_digest)?;
        let subject = subject
            .map(|(d, size)| format!(r#","subject":{}"#, descriptor(OCI_MANIFEST, d, size)))
            .unwrap_or_default();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]{subject}}}"#,
            descriptor(
                "application/vnd.oci.image.config.v1+json",
                &config_digest,
                config.len()
            ),
            layers.join(",")
        );
        self.manifest(manifest.as_bytes())
    }

    fn manifest(&mut self, bytes: &[u8]) -> io::Result<(Digest, usize)> {
        let d = self.w.blob(bytes)?;
        self.stats.blobs_written += 1;
        self.stats.manifests += 1;
        self.w.link(&layout::revision_link(&self.name, &d), &d)?;
        Ok((d, bytes.len()))
    }

    fn tag(&mut self, tag: &str, d: &Digest) -> io::Result<()> {
        self.w
            .link(&layout::tag_index_link(&self.name, tag, d), d)?;
        self.w.link(&layout::tag_current_link(&self.name, tag), d)
    }

    fn run(mut self, tags: usize) -> io::Result<Stats> {
        self.stats.repositories = 1;
        for t in 0..tags {
            let tag = format!("v{t}");
            // Retagged: an older image had this tag first and is now untagged.
            if self.rng.chance(15) {
                let (old, _) = self.image(&format!("{tag}-old"), None)?;
                self.w
                    .link(&layout::tag_index_link(&self.name, &tag, &old), &old)?;
            }
            let (digest, size) = if self.rng.chance(12) {
                let (a, sa) = self.image(&format!("{tag}-amd64"), None)?;
                let (b, sb) = self.image(&format!("{tag}-arm64"), None)?;
                let index = format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{},{}]}}"#,
                    descriptor(OCI_MANIFEST, &a, sa),
                    descriptor(OCI_MANIFEST, &b, sb)
                );
                self.manifest(index.as_bytes())?
            } else {
                self.image(&tag, None)?
            };
            self.tag(&tag, &digest)?;
            self.stats.tags += 1;
            if self.rng.chance(8) {
                self.image(&format!("{tag}-sbom"), Some((&digest, size)))?;
            }
            // Pushed and then deleted through the API: the revision's link file goes.
            if self.rng.chance(5) {
                let (gone, _) = self.image(&format!("{tag}-deleted"), None)?;
                std::fs::remove_file(self.w.root.join(layout::revision_link(&self.name, &gone)))?;
            }
            // Uploaded, never used.
            if self.rng.chance(2) {
                let p = payload(&format!("{}/{tag}/orphan", self.name));
                let d = self.w.blob(&p)?;
                self.stats.blobs_written += 1;
                self.layer(&d)?;
            }
        }
        Ok(self.stats)
    }
}

/// Generate a registry under `root` (the storage root). The directory should be empty.
pub fn generate(root: &Path, preset: Preset, seed: u64) -> io::Result<Stats> {
    let w = Writer {
        root: root.to_path_buf(),
    };
    std::fs::create_dir_all(root.join(layout::V2))?;
    let base: Vec<(Digest, usize)> = (0..BASE_LAYERS)
        .map(|i| {
            let p = payload(&format!("base layer {i} seed {seed}"));
            w.blob(&p).map(|d| (d, p.len()))
        })
        .collect::<io::Result<_>>()?;
    let stats = (0..preset.repositories)
        .into_par_iter()
        .map(|r| {
            // Names nest one to three levels deep, like team/app and org/team/app.
            let name = match r % 3 {
                0 => format!("project{}/app{r}", r % 97),
                1 => format!("org{}/team{}/svc{r}", r % 13, r % 7),
                _ => format!("app{r}"),
            };
            RepoGen {
                w: &w,
                name,
                rng: Rng(seed ^ (r as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)),
                base: &base,
                layers: preset.layers,
                stats: Stats::default(),
            }
            .run(preset.tags)
        })
        .try_reduce(Stats::default, |a, b| Ok(a + b))?;
    Ok(Stats {
        blobs_written: stats.blobs_written + BASE_LAYERS,
        ..stats
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_tree() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let sa = generate(a.path(), SMALL, 7).unwrap();
        let sb = generate(b.path(), SMALL, 7).unwrap();
        assert_eq!(sa, sb);
        assert_eq!(sa.repositories, SMALL.repositories);
        assert_eq!(sa.tags, SMALL.repositories * SMALL.tags);
        let list = |p: &Path| {
            let mut v: Vec<_> = walk(p)
                .into_iter()
                .map(|x| x.strip_prefix(p).unwrap().to_path_buf())
                .collect();
            v.sort();
            v
        };
        assert_eq!(list(a.path()), list(b.path()));
    }

    fn walk(p: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            out.push(e.path());
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
        out
    }
}
