/**
 * Firmware images from an HTTPS URL (docs/firmware-updates.md): only from hosts the config
 * allows, with the config's private CA if any, resumed with a Range request from what an earlier
 * attempt (or a gateway restart) left in the partial file, never more than the manifest's size,
 * and with an idle timeout, so a server that hangs or sends garbage ends the job with a reason
 * instead of holding it. The bytes are checked against the manifest (SHA-256) by the caller.
 */
import { createWriteStream, readFileSync, statSync, truncateSync } from "node:fs";
import { request } from "node:https";

export interface DownloadSettings {
  /** Host names (or IP literals) images may come from; empty: none. */
  hosts: readonly string[];
  /** PEM of a private CA (besides the system's). */
  ca: string | null;
  /** No byte for this long: the attempt fails. */
  idleTimeoutMs: number;
  /** Attempts without progress before giving up. */
  attempts: number;
}

export class DownloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DownloadError";
  }
}

/** Why a URL may not be fetched (scheme, host), or null when it may. */
export function refuseUrl(text: string, hosts: readonly string[]): string | null {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return `'${text.slice(0, 80)}' is not a URL`;
  }
  if (u.protocol !== "https:") return `only https:// URLs are fetched, not ${u.protocol}//`;
  if (u.username || u.password) return "a URL with credentials is refused (use a private CA and an allowed host)";
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (!hosts.some((h) => h.toLowerCase() === host)) return `host '${host}' is not in updates.download.hosts (${hosts.join(", ") || "none allowed"})`;
  return null;
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** One attempt: appends to `partial` from its current size; resolves with the bytes it now holds. */
function attempt(url: string, partial: string, size: number, s: DownloadSettings, signal: AbortSignal): Promise<number> {
  const have = sizeOf(partial);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (have > 0) headers.Range = `bytes=${have}-`;
    const req = request(url, { headers, ...(s.ca ? { ca: s.ca } : {}), signal, timeout: s.idleTimeoutMs }, (res) => {
      const status = res.statusCode ?? 0;
      let at = have;
      if (have > 0 && status === 200) {
        // The server ignored the range: start over.
        truncateSync(partial, 0);
        at = 0;
      } else if (status === 206) {
        const m = /^bytes (\d+)-/.exec(String(res.headers["content-range"] ?? ""));
        if (!m || Number(m[1]) !== have) {
          res.resume();
          return reject(new DownloadError(`the server answered the range from ${have} with '${res.headers["content-range"] ?? "no Content-Range"}'`));
        }
      } else if (status === 416 && have === size) {
        res.resume();
        return resolve(have);
      } else if (status !== 200) {
        res.resume();
        return reject(new DownloadError(`HTTP ${status} from ${new URL(url).host}`));
      }
      const out = createWriteStream(partial, { flags: at === 0 ? "w" : "a" });
      let failed: Error | null = null;
      res.on("data", (chunk: Buffer) => {
        if (failed) return;
        if (at + chunk.length > size) {
          failed = new DownloadError(`the server sent more than the manifest's ${size} bytes (not this image)`);
          res.destroy();
          return;
        }
        at += chunk.length;
        out.write(chunk);
      });
      res.on("error", (err) => (failed ??= err));
      res.on("close", () => {
        out.end(() => (failed ? reject(failed) : resolve(at)));
      });
    });
    req.on("timeout", () => req.destroy(new DownloadError(`no data from ${new URL(url).host} for ${Math.round(s.idleTimeoutMs / 1000)} s`)));
    req.on("error", reject);
    req.end();
  });
}

/**
 * Fetches `url` into `partial` until it holds `size` bytes; returns the bytes. Throws
 * DownloadError after `attempts` failures in a row without progress.
 */
export async function download(url: string, partial: string, size: number, s: DownloadSettings, signal: AbortSignal, onProgress: (bytes: number) => void = () => {}): Promise<Buffer> {
  const refused = refuseUrl(url, s.hosts);
  if (refused) throw new DownloadError(refused);
  let failures = 0;
  let last: unknown = null;
  while (sizeOf(partial) < size) {
    if (signal.aborted) throw signal.reason ?? new Error("aborted");
    const before = sizeOf(partial);
    try {
      await attempt(url, partial, size, s, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      last = err;
    }
    const now = sizeOf(partial);
    onProgress(now);
    if (now > before) failures = 0;
    else if (++failures >= s.attempts) {
      const why = last instanceof Error ? last.message : "the server sent nothing";
      throw new DownloadError(`download from ${new URL(url).host} failed ${failures} times without progress: ${why}`);
    }
    if (now < size && now === before) await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** failures)));
  }
  return readFileSync(partial);
}
