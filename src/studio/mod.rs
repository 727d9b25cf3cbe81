//! `iw-lab serve`: the studio, a local web app to hand-tag a training set, review a run
//! against its ground truth and browse any folder.
//!
//! Owns: the HTTP server (axum on tokio), its guard (`guard`), the hand-tagging session
//! (`session`), versioned tag files and the edit log (`tagfile`), and the three modes' JSON
//! endpoints (`tagging`, `browse`, `review`), and similar images and duplicate groups of what
//! is listed (`similar`). The page (`assets/`) is plain HTML, CSS and
//! JavaScript compiled into the binary. Does not own: SQL (listing and search go through
//! `crate::store::studio`), thumbnails (`crate::imaging::thumbs`), models (`crate::runner`).
//! Documented in `docs/serve.md`.

pub mod answer;
pub mod browse;
pub mod guard;
mod http;
pub mod looks;
pub mod picker;
pub mod review;
pub mod session;
pub mod similar;
pub mod tagfile;
pub mod tagging;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};

/// What the studio serves.
pub enum Mode {
    Tag(Box<tagging::Tagging>),
    Browse(Box<browse::Browse>),
    Review(Box<review::Review>),
    /// Choosing a run or a dataset of the project.
    Pick,
}

impl Mode {
    /// Whether `rel` (as the listing spells it) is an image this mode serves from root `root`.
    pub fn serves(&self, root: usize, rel: &str) -> bool {
        match self {
            Mode::Tag(t) => root == 0 && t.has_image(rel),
            Mode::Browse(b) => b.listing.has(root, rel),
            Mode::Review(r) => r.listing().has(root, rel),
            Mode::Pick => false,
        }
    }

    /// The folders the served files come from, by number.
    pub fn roots(&self) -> Vec<PathBuf> {
        match self {
            Mode::Tag(t) => vec![t.out.clone()],
            Mode::Browse(b) => vec![b.root.clone()],
            Mode::Review(r) => r.roots(),
            Mode::Pick => Vec::new(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Mode::Tag(_) => "tag",
            Mode::Browse(_) => "browse",
            Mode::Review(_) => "review",
            Mode::Pick => "pick",
        }
    }
}

/// How the server listens.
#[derive(Debug, Clone)]
pub struct Listen {
    pub host: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    pub token: Option<String>,
    pub open: bool,
}

/// Everything a request handler can reach.
pub struct App {
    /// What is served now (the picker swaps it).
    mode: std::sync::RwLock<Arc<Mode>>,
    pub policy: guard::Policy,
    /// `.iw-lab/thumbs` of the project.
    pub thumbs: PathBuf,
    /// The project's runs and datasets, when the studio was started on none of them.
    pub picker: Option<Arc<picker::Picker>>,
    /// What "similar images" and the duplicates view measure with.
    pub similar: Arc<similar::Setup>,
}

impl App {
    /// What is served now.
    pub fn mode(&self) -> Arc<Mode> {
        self.mode.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves something else (the picker's choice).
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(mode);
    }
}

/// Binds, prints the URL (the first line of output), serves until Ctrl+C or SIGTERM.
pub fn serve(
    mode: Mode,
    listen: Listen,
    thumbs: PathBuf,
    picker: Option<picker::Picker>,
    similar: similar::Setup,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let addr = SocketAddr::new(listen.host, listen.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?;
        let token = listen.token.clone().unwrap_or_else(guard::new_token);
        let app = Arc::new(App {
            mode: std::sync::RwLock::new(Arc::new(mode)),
            policy: guard::Policy {
                token: token.clone(),
                addr: bound,
            },
            thumbs,
            picker: picker.map(Arc::new),
            similar: Arc::new(similar),
        });
        let url = format!("http://{}/?token={token}", display_addr(bound));
        println!("iw-lab studio ({}): {url}", app.mode().name());
        if !bound.ip().is_loopback() {
            crate::ui::warn(format!(
                "listening on {bound}, beyond this machine: every request needs the token"
            ));
        }
        crate::ui::note("Ctrl+C stops the studio; everything saved stays saved");
        if listen.open {
            open_browser(&url);
        }
        let router = http::router(app);
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown())
            .await
            .context("the studio's server stopped")
    })
}

fn display_addr(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => format!("{}:{}", v.ip(), v.port()),
        SocketAddr::V6(v) => format!("[{}]:{}", v.ip(), v.port()),
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        crate::ui::warn(format!(
            "cannot open a browser ({opener}: {e}); open the URL above"
        ));
    }
}
