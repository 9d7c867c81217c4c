//! Builds the console's single-page app (functions/console/app, bundled by esbuild) into OUT_DIR and
//! writes `assets.rs`, the list of files `include_bytes!` embeds in the binary.
//!
//! `npm ci` runs here once when `app/node_modules` is missing or older than the lockfile (`make dev` and
//! `make test` run it before cargo through `infra/dev/console-app`, so a plain `cargo build` normally
//! finds it done). Without Node.js the build stops with a message saying what to install.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let app = manifest.join("app");
    let widget = manifest.join("../embed-script/widget/widget.js");
    for watched in [
        app.join("src"),
        app.join("build.mjs"),
        app.join("package.json"),
        app.join("package-lock.json"),
        widget,
    ] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    println!("cargo:rerun-if-env-changed=KOTOBA_NPM");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("console-app");

    if needs_install(&app) {
        let npm = std::env::var("KOTOBA_NPM").unwrap_or_else(|_| "npm".into());
        run(
            Command::new(&npm)
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&app),
            "npm ci (installing the console's build tools from functions/console/app/package-lock.json)",
        );
    }
    run(
        Command::new("node")
            .arg("build.mjs")
            .arg(&out)
            .current_dir(&app),
        "node build.mjs (bundling the console app)",
    );

    let mut files = Vec::new();
    collect(&out, &out, &mut files);
    files.sort();
    let mut list =
        String::from("/// Every file of the built console app: (path under /console/, bytes).\n");
    list.push_str("pub static FILES: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        list.push_str(&format!("    ({rel:?}, include_bytes!({abs:?})),\n"));
    }
    list.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("assets.rs");
    std::fs::write(&dest, list).expect("writing assets.rs");
}

fn needs_install(app: &Path) -> bool {
    let marker = app.join("node_modules/.package-lock.json");
    let lock = app.join("package-lock.json");
    match (std::fs::metadata(&marker), std::fs::metadata(&lock)) {
        (Ok(m), Ok(l)) => match (m.modified(), l.modified()) {
            (Ok(m), Ok(l)) => m < l,
            _ => true,
        },
        _ => true,
    }
}

fn run(command: &mut Command, what: &str) {
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "the console app could not be built: {what} failed ({status}). See the output above; \
             infra/dev/console-app runs the same steps."
        ),
        Err(e) => panic!(
            "the console app could not be built: {what} did not start ({e}). The console function \
             embeds a web app built with Node.js ≥ 20 and npm: install them (Debian: `apt-get install \
             nodejs npm`) and build again."
        ),
    }
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let rel = path
                .strip_prefix(root)
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/");
            files.push((rel, path.display().to_string()));
        }
    }
}
