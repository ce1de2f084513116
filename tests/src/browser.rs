//! Headless Chromium, for the pages and charts people look at.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::repo_root;

/// Path of a headless Chromium: `$HANDOFF_CHROMIUM`, else found or installed by
/// `ops/bin/find-chromium` (Debian's package).
pub fn chromium() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("HANDOFF_CHROMIUM").map(PathBuf::from)
            && p.exists()
        {
            return p;
        }
        let out = Command::new(repo_root().join("ops/bin/find-chromium"))
            .stderr(Stdio::inherit())
            .output()
            .expect("ops/bin/find-chromium runs");
        assert!(out.status.success(), "no chromium for the browser tests");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
    })
    .clone()
}

/// A page as headless Chromium rendered it.
pub struct Rendered {
    /// The DOM after the page's scripts ran (`--dump-dom`).
    pub dom: String,
    /// Width and height of the screenshot, from its PNG header.
    pub size: (u32, u32),
    /// Bytes of the screenshot's PNG.
    pub png_bytes: u64,
    /// Bytes of a screenshot of an empty page of the same size, taken the same way:
    /// a rendered page with content compresses far worse than a blank one.
    pub blank_png_bytes: u64,
}

/// Renders `page` in headless Chromium into `target/screenshots/<name>.png` (kept for a
/// person to look at) and checks the screenshot has the asked size and is not blank;
/// returns what was rendered, to check its DOM.
pub fn screenshot(page: &Path, name: &str, size: (u32, u32)) -> Rendered {
    let dir = repo_root().join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshots dir");
    let rendered = render_in_browser(page, &dir.join(format!("{name}.png")), size);
    assert_eq!(rendered.size, size, "{name}: screenshot size");
    assert!(
        rendered.png_bytes > 2 * rendered.blank_png_bytes,
        "{name}: the screenshot looks blank: {} bytes, an empty page {} bytes",
        rendered.png_bytes,
        rendered.blank_png_bytes
    );
    rendered
}

/// Opens `page` (a local file: HTML, SVG) in headless Chromium, writes a screenshot
/// of `size` to `png` and returns what was rendered.
pub fn render_in_browser(page: &Path, png: &Path, size: (u32, u32)) -> Rendered {
    let profile = tempfile::tempdir().expect("browser profile dir");
    let run = |url: String, extra: &[String]| {
        let out = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                "--allow-file-access-from-files",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={},{}", size.0, size.1))
            .args(extra)
            .arg(url)
            .output()
            .expect("chromium runs");
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let url = format!(
        "file://{}",
        page.canonicalize().expect("page path").display()
    );
    let dom = run(url.clone(), &["--dump-dom".to_string()]);
    run(url, &[format!("--screenshot={}", png.display())]);
    let blank = png.with_extension("blank.png");
    run(
        "about:blank".to_string(),
        &[format!("--screenshot={}", blank.display())],
    );
    let bytes = std::fs::read(png).expect("screenshot written");
    // PNG: 8-byte signature, then the IHDR chunk: length, "IHDR", width, height.
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "not a PNG: {}",
        png.display()
    );
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    Rendered {
        dom,
        size: (be(16), be(20)),
        png_bytes: bytes.len() as u64,
        blank_png_bytes: std::fs::metadata(&blank).map(|m| m.len()).unwrap_or(0),
    }
}
