//! Files written whole or not at all, and durably: the one way iw-lab replaces a file.
//!
//! Content goes to a temporary file in the destination's folder (`.iw-lab-<pid>-*.tmp`, so a
//! killed writer's leftovers are recognisable), is fsynced, renamed over the destination, and
//! the folder is fsynced so the rename itself survives a power cut. A reader sees the old file
//! or the new one, never a mix; a crash leaves at most a temporary file, which
//! [`clean_stale_temps`] removes. An existing file's permissions are kept; a new file gets
//! 0666 less the umask, as any program's `open(O_CREAT)` would.
//!
//! [`stage`] splits the steps so a caller writing many files can fsync them all before
//! renaming them all (group commit), or record something durable in between.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Takes an exclusive advisory lock on `path` (created, with its folder, when missing),
/// waiting for whoever holds it; held until the returned file is dropped, released by the
/// kernel when a holder is killed. The one way commands serialise changes to shared state.
pub fn lock(path: &Path) -> std::io::Result<std::fs::File> {
    let file = open_lock(path)?;
    file.lock()?;
    Ok(file)
}

/// [`lock`] without waiting: `None` when another process holds it.
pub fn try_lock(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    let file = open_lock(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

fn open_lock(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    stage(path, bytes)?.commit()
}

/// Writes what `fill` writes to `path` atomically and durably (for content streamed from a
/// reader, or serialised piece by piece). Nothing is replaced when `fill` fails.
pub fn write_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut staged = stage_new(path, &[], path.exists())?;
    fill(staged.tmp.as_file_mut())?;
    staged.commit()
}

/// A file written to its temporary name but not yet in place.
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
}

/// Writes `bytes` to a temporary file beside `path`.
pub fn stage(path: &Path, bytes: &[u8]) -> std::io::Result<Staged> {
    stage_new(path, bytes, path.exists())
}

/// [`stage`] when the caller knows whether `path` exists (an existing file's permissions are
/// carried over). Missing parent folders are created.
pub fn stage_new(path: &Path, bytes: &[u8], exists: bool) -> std::io::Result<Staged> {
    let dir = folder_of(path);
    std::fs::create_dir_all(dir)?;
    let prefix = format!(".iw-lab-{}-", std::process::id());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if exists {
        if let Ok(meta) = std::fs::metadata(path) {
            let _ = tmp.as_file().set_permissions(meta.permissions());
        }
    }
    Ok(Staged {
        tmp,
        dest: path.to_path_buf(),
    })
}

fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

impl Staged {
    /// The temporary file, to write more into before committing.
    pub fn file(&mut self) -> &mut std::fs::File {
        self.tmp.as_file_mut()
    }

    /// Flushes the temporary file to disk.
    pub fn sync(&self) -> std::io::Result<()> {
        self.tmp.as_file().sync_all()
    }

    /// fsync, rename into place, fsync the folder.
    pub fn commit(self) -> std::io::Result<()> {
        self.sync()?;
        self.rename()
    }

    /// Renames into place and makes the rename durable (call [`Staged::sync`] first).
    pub fn rename(self) -> std::io::Result<()> {
        let dir = folder_of(&self.dest).to_path_buf();
        self.tmp.persist(&self.dest).map_err(|e| e.error)?;
        sync_folder(&dir);
        Ok(())
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// The temporary file's path, for a writer that writes by name (DuckDB's `COPY`); then
    /// [`Staged::commit_written`].
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Commits what a writer wrote at [`Staged::path`] (it may have replaced the file, so the
    /// file at that path is synced, not the one this handle opened).
    pub fn commit_written(self) -> std::io::Result<()> {
        std::fs::File::open(self.tmp.path())?.sync_all()?;
        self.rename()
    }
}

/// fsyncs a folder so a rename in it is durable (best effort: not every file system allows
/// opening a folder).
fn sync_folder(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Removes temporary files that a killed writer left in `dir` (`.iw-lab-<pid>-*.tmp` whose
/// process is gone). Returns how many were removed.
pub fn clean_stale_temps(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix(".iw-lab-")
            .filter(|_| name.ends_with(".tmp"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_keeps_modes_and_streams() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sub/a.txt");
        write(&f, b"one").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"one");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_with(&f, |w| w.write_all(b"two")).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A failing writer replaces nothing and leaves no temporary file behind.
        let err = write_with(&f, |_| Err(std::io::Error::other("no"))).unwrap_err();
        assert_eq!(err.to_string(), "no");
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }
}
