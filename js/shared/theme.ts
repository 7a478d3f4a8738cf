/**
 * Theme detection and colour resolution shared by every widget.
 *
 * Colours come from CSS variables (see theme.css): `--nw-*` (user overrides) falling back to JupyterLab's
 * `--jp-*`, then VS Code's `--vscode-*`, then light/dark defaults chosen by `.nw-dark`, which
 * `hostIsDark` sets from the host's markers. The palette ends follow the *resolved* background, so
 * they stay right however the background was chosen.
 */
import { PALETTES, type Palette, type RGB, isDarkColour, parseColour } from "./colour";

/** Does the host page use a dark theme? JupyterLab, VS Code and Colab markers, else the OS setting. */
export function hostIsDark(doc: Document = document): boolean {
  const body = doc.body;
  const jp = body?.getAttribute("data-jp-theme-light");
  if (jp === "false") return true;
  if (jp === "true") return false;
  const cls = body?.classList;
  if (cls?.contains("vscode-light") || cls?.contains("vscode-high-contrast-light")) return false;
  if (cls?.contains("vscode-dark") || cls?.contains("vscode-high-contrast")) return true;
  const colab = doc.documentElement.getAttribute("theme");
  if (colab === "dark") return true;
  if (colab === "light") return false;
  return doc.defaultView?.matchMedia?.("(prefers-color-scheme: dark)").matches ?? false;
}

/** Resolve any CSS colour (named, var(), hsl…) to RGB through a probe element inside `root`. */
function resolve(probe: HTMLElement, css: string): RGB | null {
  probe.style.color = "";
  probe.style.color = css;
  const view = probe.ownerDocument.defaultView;
  return parseColour(view?.getComputedStyle(probe).color) ?? parseColour(css);
}

/** The palette a widget root shows now: background, foreground and the two diverging ends. */
export function resolvePalette(root: HTMLElement): Palette {
  const dark = root.classList.contains("nw-dark");
  const probe = root.ownerDocument.createElement("span");
  probe.style.display = "none";
  root.appendChild(probe);
  try {
    const bg = resolve(probe, "var(--nw-c-bg)") ?? parseColour(dark ? "#1e1e1e" : "#ffffff")!;
    const fg = resolve(probe, "var(--nw-c-fg)") ?? parseColour(dark ? "#e6e6e6" : "#1f1f1f")!;
    const ends = isDarkColour(bg) ? PALETTES.dark : PALETTES.light;
    const style = root.ownerDocument.defaultView?.getComputedStyle(root);
    const user = (name: string) => {
      const v = style?.getPropertyValue(name).trim();
      return v ? resolve(probe, v) : null;
    };
    return {
      bg,
      fg,
      neg: user("--nw-neg") ?? parseColour(ends.neg)!,
      pos: user("--nw-pos") ?? parseColour(ends.pos)!,
    };
  } finally {
    probe.remove();
  }
}

/**
 * Call `onChange` when the host theme may have changed (JupyterLab/VS Code/Colab switch or OS setting).
 * Returns a function that stops watching.
 */
export function watchTheme(onChange: () => void, doc: Document = document): () => void {
  const observer = new MutationObserver(onChange);
  const opts = { attributes: true, attributeFilter: ["class", "data-jp-theme-light", "data-jp-theme-name", "theme"] };
  if (doc.body) observer.observe(doc.body, opts);
  observer.observe(doc.documentElement, opts);
  const media = doc.defaultView?.matchMedia?.("(prefers-color-scheme: dark)");
  media?.addEventListener?.("change", onChange);
  return () => {
    observer.disconnect();
    media?.removeEventListener?.("change", onChange);
  };
}

/**
 * Keep a widget's `root` in step with the host theme: its `.nw-dark` class and its palette, re-resolved
 * right after render (the element may still be detached then), 300 ms later, and on every host theme
 * switch (again 300 ms after it: a new theme's stylesheets may load a moment later). `onPalette` gets each
 * palette that differs from the last one. Returns a function that stops following.
 */
export function followTheme(
  root: HTMLElement,
  doc: Document,
  initial: Palette,
  onPalette: (palette: Palette) => void,
): () => void {
  let last = JSON.stringify(initial);
  const refresh = () => {
    root.classList.toggle("nw-dark", hostIsDark(doc));
    const next = resolvePalette(root);
    const key = JSON.stringify(next);
    if (key !== last) {
      last = key;
      onPalette(next);
    }
  };
  const timers: ReturnType<typeof setTimeout>[] = [setTimeout(refresh, 0), setTimeout(refresh, 300)];
  const stop = watchTheme(() => {
    refresh();
    timers.push(setTimeout(refresh, 300));
  }, doc);
  return () => {
    stop();
    timers.forEach(clearTimeout);
  };
}
