//! Output that never leaves a half-written file behind: stdout, or a temporary file next
//! to the target that is renamed over it only when everything was written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

pub enum AtomicOutput {
    Stdout(BufWriter<std::io::Stdout>),
    File {
        /// Cleared once the file has been moved into place.
        tmp: Option<PathBuf>,
        target: PathBuf,
        file: BufWriter<File>,
    },
}

impl AtomicOutput {
    pub fn new(target: Option<&Path>) -> anyhow::Result<Self> {
        let Some(target) = target else {
            return Ok(Self::Stdout(BufWriter::new(std::io::stdout())));
        };
        let name = target.file_name().context("--out must name a file")?;
        let tmp = target.with_file_name(format!(".{}.partial", name.to_string_lossy()));
        let file =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(Self::File {
            tmp: Some(tmp),
            target: target.to_path_buf(),
            file: BufWriter::new(file),
        })
    }

    /// Flushes and, for a file, moves it into place.
    pub fn commit(mut self) -> anyhow::Result<()> {
        match &mut self {
            Self::Stdout(w) => Ok(w.flush()?),
            Self::File { tmp, target, file } => {
                file.flush()?;
                file.get_ref().sync_all()?;
                if let Some(from) = tmp.take() {
                    std::fs::rename(&from, &*target).with_context(|| {
                        format!("cannot move {} to {}", from.display(), target.display())
                    })?;
                }
                Ok(())
            }
        }
    }
}

impl Write for AtomicOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Stdout(w) => w.write(buf),
            Self::File { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Stdout(w) => w.flush(),
            Self::File { file, .. } => file.flush(),
        }
    }
}

impl Drop for AtomicOutput {
    fn drop(&mut self) {
        // Not committed (an error happened): remove the partial file, keep the old target.
        if let Self::File { tmp: Some(tmp), .. } = self {
            let _ = std::fs::remove_file(tmp);
        }
    }
}
