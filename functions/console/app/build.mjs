// Bundles the console app with esbuild: `node build.mjs <outdir>` (default ./dist). Writes
//   index.html, preview.html          the page and the widget preview frame (no inline script or style)
//   assets/<name>-<hash>.js|.css      the bundles, named by content (served immutable)
//   meta/widget-style-hash            the CSP hash of the real widget's stylesheet (for the preview frame)
// The console function's build.rs runs this and embeds the output.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import * as esbuild from "esbuild";

const here = import.meta.dirname;
const out = path.resolve(process.argv[2] || path.join(here, "dist"));
const widgetFile = path.resolve(here, "../../embed-script/widget/widget.js");

fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(path.join(out, "meta"), { recursive: true });

// The real widget (functions/embed-script/widget/widget.js is one function expression taking the site's
// config), imported by the preview frame as a module's default export.
const widget = {
  name: "kotoba-widget",
  setup(build) {
    build.onResolve({ filter: /^kotoba-widget$/ }, () => ({ path: widgetFile, namespace: "kotoba-widget" }));
    build.onLoad({ filter: /.*/, namespace: "kotoba-widget" }, () => {
      const source = fs.readFileSync(widgetFile, "utf8").trim().replace(/;$/, "");
      return { contents: `export default ${source};\n`, loader: "js" };
    });
  },
};

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: "src/main.jsx", preview: "src/preview.js" },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  jsx: "automatic",
  jsxImportSource: "preact",
  outdir: path.join(out, "assets"),
  entryNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  legalComments: "none",
  metafile: true,
  plugins: [widget],
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((p) => path.relative(out, path.resolve(here, p)));
const find = (name, ext) => {
  const hit = outputs.find((p) => p.startsWith(`assets/${name}-`) && p.endsWith(ext));
  if (!hit) throw new Error(`esbuild wrote no ${name}*${ext}`);
  return "/console/" + hit;
};

const page = ({ title, script, css, body }) => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<meta name="kotoba-stripe-js" content="__KOTOBA_STRIPE_JS__">
<title>${title}</title>
${css ? `<link rel="stylesheet" href="${css}">\n` : ""}<script type="module" src="${script}"></script>
</head>
<body>${body}</body>
</html>
`;

fs.writeFileSync(
  path.join(out, "index.html"),
  page({
    title: "Kotoba console",
    script: find("app", ".js"),
    css: find("app", ".css"),
    body: '<div id="app"><noscript>The Kotoba console needs JavaScript.</noscript></div>',
  }),
);
fs.writeFileSync(
  path.join(out, "preview.html"),
  page({ title: "Widget preview", script: find("preview", ".js"), css: find("preview", ".css"), body: "" }),
);

// Bundles also as gzip (served to browsers that accept it: about a third of the bytes).
for (const file of outputs.filter((p) => /\.(js|css)$/.test(p))) {
  const full = path.join(out, file);
  fs.writeFileSync(full + ".gz", zlib.gzipSync(fs.readFileSync(full), { level: 9 }));
}

// The widget puts its stylesheet in a <style> element of its shadow root; the preview frame's policy
// admits exactly that text by hash. The stylesheet is one template literal without substitutions.
const source = fs.readFileSync(widgetFile, "utf8");
const m = source.match(/const CSS = `([^`]*)`;/);
if (!m || m[1].includes("${") || m[1].includes("\\")) throw new Error("widget.js: the CSS constant moved or changed shape");
const hash = crypto.createHash("sha256").update(m[1], "utf8").digest("base64");
fs.writeFileSync(path.join(out, "meta/widget-style-hash"), `'sha256-${hash}'\n`);

// Every text exists in the three languages.
const { INCOMPLETE } = await import("./src/strings.js");
if (INCOMPLETE.length) throw new Error(`strings.js: keys without ja/en/ko: ${INCOMPLETE.join(", ")}`);
