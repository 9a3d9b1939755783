/**
 * Firmware images kept on the gateway (`<data dir>/images/<sha256>.bin`) within a size limit:
 * adding an image first removes the oldest ones no unfinished job needs; if that is not enough,
 * the image is refused (the gateway's disk holds the outbox's backlog too).
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sha256 } from "./image.js";

export class ImageStoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ImageStoreError";
  }
}

export class ImageStore {
  constructor(
    readonly dir: string,
    readonly maxBytes: number,
  ) {}


  /** Where an image with this SHA-256 is (or would be) kept. */
  pathOf(sha: string): string {
    return join(this.dir, `${sha}.bin`);
  }

  /** Keeps `image` (named by its SHA-256); returns its path. `inUse`: paths that must stay. */
  put(image: Uint8Array, inUse: ReadonlySet<string>): string {
    const sha = sha256(image).toString("hex");
    const path = this.pathOf(sha);
    mkdirSync(this.dir, { recursive: true });
    try {
      if (statSync(path).size === image.length) return path;
    } catch {
      // not kept yet
    }
    if (image.length > this.maxBytes) throw new ImageStoreError(`image of ${image.length} bytes exceeds the image store's limit of ${this.maxBytes} bytes (updates.images_max)`);
    const files = this.files().filter((f) => f.path !== path);
    let total = files.reduce((n, f) => n + f.size, 0);
    for (const f of files.sort((a, b) => a.mtime - b.mtime)) {
      if (total + image.length <= this.maxBytes) break;
      if (inUse.has(f.path)) continue;
      rmSync(f.path, { force: true });
      total -= f.size;
    }
    if (total + image.length > this.maxBytes) {
      throw new ImageStoreError(`no room for an image of ${image.length} bytes: ${total} bytes are kept for unfinished updates (limit ${this.maxBytes}, updates.images_max)`);
    }
    const tmp = `${path}.part`;
    writeFileSync(tmp, image);
    renameSync(tmp, path);
    return path;
  }

  read(path: string): Buffer {
    return readFileSync(path);
  }

  files(): Array<{ path: string; size: number; mtime: number }> {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    return names
      .filter((n) => /^[0-9a-f]{64}\.bin$/.test(n))
      .map((n) => {
        const p = join(this.dir, n);
        const st = statSync(p);
        return { path: p, size: st.size, mtime: st.mtimeMs };
      });
  }
}
