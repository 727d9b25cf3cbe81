//! Test helpers: a throwaway project folder, the real binary, fixture paths, and the Python
//! oracle (numpy, Pillow, onnxruntime, scikit-learn; installed by `scripts/test`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    repo().join("tests").join("fixtures")
}

pub fn fixture_images() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures().join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "md"))
        .collect();
    v.sort();
    v
}

/// A temporary project with `datasets/`, `models/`, `experiments/`.
pub struct Project {
    pub dir: tempfile::TempDir,
    /// Extra environment for every command.
    pub env: Vec<(String, String)>,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::Builder::new()
            .prefix("iw-lab-test-")
            .tempdir()
            .unwrap();
        for d in ["datasets", "models", "experiments"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Project {
            dir,
            env: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn copy(&self, from: &Path, rel: &str) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy(from, &p).unwrap();
        p
    }

    /// The WD-shaped test tagger as `models/NAME.yaml` (extra YAML lines appended).
    pub fn wd_model(&self, name: &str, extra: &str) {
        let m = fixtures().join("models").join("wd");
        self.write(
            &format!("models/{name}.yaml"),
            &format!(
                "kind: onnx-tagger\nsource: {}\npreset: wd\nlabels: {}\n{extra}",
                m.join("model.onnx").display(),
                m.join("selected_tags.csv").display()
            ),
        );
    }

    pub fn joytag_model(&self, name: &str, extra: &str) {
        let m = fixtures().join("models").join("joytag");
        self.write(
            &format!("models/{name}.yaml"),
            &format!(
                "kind: onnx-tagger\nsource: {}\npreset: joytag\nlabels: {}\n{extra}",
                m.join("model.onnx").display(),
                m.join("top_tags.txt").display()
            ),
        );
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_iw-lab"));
        c.args(args).current_dir(self.path());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and expects exit code `code`; returns stdout.
    pub fn expect(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "iw-lab {args:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with `--json`-style output and parses one JSON document.
    pub fn json(&self, args: &[&str], code: i32) -> serde_json::Value {
        let out = self.expect(args, code);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
}

/// Writes `n` distinct noise images (PNG, `side`×`side`) into `dir`.
pub fn noise_images(dir: &Path, n: usize, side: u32) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let img = image::RgbImage::from_fn(side, side, |_, _| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
            });
            let p = dir.join(format!("noise_{i:04}.png"));
            img.save(&p).unwrap();
            p
        })
        .collect()
}

/// The Python interpreter with the oracle's packages: `$IW_LAB_PYTHON`, else the repo's
/// `.venv`, else `python3`. Panics with set-up instructions when the packages are missing.
pub fn python() -> PathBuf {
    let candidates: Vec<PathBuf> = std::env::var_os("IW_LAB_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([repo().join(".venv/bin/python"), PathBuf::from("python3")])
        .collect();
    for c in &candidates {
        let ok = Command::new(c)
            .args(["-c", "import numpy, PIL, onnxruntime, sklearn"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return c.clone();
        }
    }
    panic!(
        "the Python oracle needs numpy, pillow, onnxruntime and scikit-learn; run `scripts/test` \
         (it creates .venv from tests/requirements.txt) or set IW_LAB_PYTHON; tried {candidates:?}"
    );
}

pub fn python_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(python()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "python {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The shared normalisation, for comparing reference label names with ours.
pub fn norm(tag: &str) -> String {
    iw_lab::tags::normalise(tag).unwrap()
}
