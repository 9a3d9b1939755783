/// <reference lib="dom" />
/**
 * What both pages' scripts share in the browser: the config block the page carries, the token
 * passed on from the page's own URL to its data requests, and elements made with text only.
 */
export type Value = number | boolean | string | null;
export type Points = Record<string, { value: Value; ts: number; quality: string }>;

/** The page's JSON config block (html.ts: jsonBlock). */
export function pageConfig<T>(): T {
  return JSON.parse(document.getElementById("config")!.textContent!) as T;
}

const token = new URLSearchParams(location.search).get("token");

/** A data path with the page's token, when it was opened with one (live_feed.token). */
export function withToken(path: string): string {
  return token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path;
}

/** An element with a class and text (textContent: never HTML). */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
