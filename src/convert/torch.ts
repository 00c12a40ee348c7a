/**
 * PyTorch checkpoints (`torch.save` since 1.6: a zip of `<archive>/data.pkl`, one
 * `<archive>/data/<key>` entry per storage, `<archive>/version`, `<archive>/byteorder`), read
 * without Python and without executing the pickle (see pickle.ts).
 *
 * The pickle may only use: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
 * `torch._utils._rebuild_tensor`, `torch._utils._rebuild_parameter` (called), and the typed
 * storage classes `torch.FloatStorage`, `torch.HalfStorage`, `torch.BFloat16Storage` and the
 * other `torch.*Storage` names (tags inside persistent ids `('storage', type, key, location,
 * numel)`; never called). Anything else, `torch.storage._load_from_bytes` included, is refused
 * with the global's name. Tensor views honour storage offsets and strides.
 */
import { ConvertError } from "./errors.js";
import { withFile, writeFileAtomic } from "./fileio.js";
import { PickleBuilder, PickleError, PyDict, PyGlobal, PyTuple, unpickle } from "./pickle.js";
import { DTYPE_BYTES, numel, shapeText, type SourceTensor } from "./tensor.js";
import { encodeZip, looksLikeZip, openZip, readZipEntry, type ZipArchive, type ZipEntry } from "./zip.js";

/** Storage class name → dtype (safetensors naming). */
const STORAGE_DTYPES: Readonly<Record<string, string>> = {
  FloatStorage: "F32",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  DoubleStorage: "F64",
  LongStorage: "I64",
  IntStorage: "I32",
  ShortStorage: "I16",
  CharStorage: "I8",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
};
const DTYPE_STORAGES: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(STORAGE_DTYPES).map(([k, v]) => [v, k]));

/** A storage named by a persistent id. */
class StorageRef {
  constructor(
    readonly dtype: string,
    readonly key: string,
    readonly numel: number,
  ) {}
}

/** What `_rebuild_tensor_v2` returns here: a strided view of a storage. */
class TensorView {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

/** An opened PyTorch checkpoint: a flat state dict of tensors. */
export interface TorchCheckpoint {
  path: string;
  tensors: SourceTensor[];
}

function intTuple(v: unknown, what: string): number[] {
  const items = v instanceof PyTuple ? v.items : Array.isArray(v) ? v : null;
  if (!items || !items.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0)) {
    throw new PickleError(`pickle: ${what} is not a tuple of non-negative integers`);
  }
  return items as number[];
}

function rebuildTensor(args: readonly unknown[]): TensorView {
  if (args.length < 4) throw new PickleError(`pickle: _rebuild_tensor needs at least 4 arguments, got ${args.length}`);
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof StorageRef)) throw new PickleError("pickle: _rebuild_tensor's first argument is not a storage");
  if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) throw new PickleError("pickle: bad storage offset");
  const shape = intTuple(size, "tensor size");
  const strides = intTuple(stride, "tensor stride");
  if (shape.length !== strides.length) throw new PickleError(`pickle: size ${shapeText(shape)} and stride ${shapeText(strides)} differ in length`);
  return new TensorView(storage, offset, shape, strides);
}

const CALLABLES: Record<string, (args: readonly unknown[]) => unknown> = {
  "collections.OrderedDict": (args) => {
    if (args.length !== 0) throw new PickleError("pickle: OrderedDict called with arguments");
    return new PyDict();
  },
  "torch._utils._rebuild_tensor_v2": rebuildTensor,
  "torch._utils._rebuild_tensor": rebuildTensor,
  "torch._utils._rebuild_parameter": (args) => {
    if (!(args[0] instanceof TensorView)) throw new PickleError("pickle: _rebuild_parameter's data is not a tensor");
    return args[0];
  },
};
const TAGS: ReadonlySet<string> = new Set(Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`));

/** The directory prefix inside the zip ("archive/" or the file's stem) holding data.pkl. */
function archivePrefix(zip: ZipArchive): string {
  const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkls.length !== 1) {
    throw new ConvertError(zip.path, pkls.length === 0 ? "not a PyTorch checkpoint: the zip has no <archive>/data.pkl" : "the zip has more than one data.pkl");
  }
  return pkls[0].slice(0, -"data.pkl".length);
}

/** Copies the strided view's elements into contiguous row-major bytes. */
function gather(storage: Uint8Array, view: TensorView, elem: number): Uint8Array {
  const n = numel(view.shape);
  const out = new Uint8Array(n * elem);
  if (n === 0) return out;
  const rank = view.shape.length;
  // contiguous row-major?
  let expect = 1;
  let contiguous = true;
  for (let d = rank - 1; d >= 0; d--) {
    if (view.shape[d] !== 1 && view.stride[d] !== expect) contiguous = false;
    expect *= view.shape[d];
  }
  if (contiguous) {
    out.set(storage.subarray(view.offset * elem, (view.offset + n) * elem));
    return out;
  }
  const idx = new Array<number>(rank).fill(0);
  for (let i = 0; i < n; i++) {
    let src = view.offset;
    for (let d = 0; d < rank; d++) src += idx[d] * view.stride[d];
    out.set(storage.subarray(src * elem, (src + 1) * elem), i * elem);
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < view.shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

/**
 * Opens a PyTorch checkpoint (`.bin`/`.pt`) and lists its tensors without reading their data.
 *
 * @throws {ConvertError} for a file that is not a zip checkpoint (the legacy pre-1.6 format is
 *   named), a truncated or corrupt file, a pickle using a disallowed global, a top level that is
 *   not a flat dict of tensors, or a tensor view outside its storage.
 */
export function openTorchCheckpoint(path: string): TorchCheckpoint {
  const head = withFile(path, (f) => f.read(0, Math.min(f.size, 4), "file start"));
  if (!looksLikeZip(head)) {
    if (head[0] === 0x80) {
      throw new ConvertError(path, "legacy (pre-1.6, non-zip) PyTorch serialization is not supported: re-save it with a current torch.save or as safetensors", "unsupported");
    }
    throw new ConvertError(path, "not a PyTorch checkpoint (not a zip archive)");
  }
  const zip = openZip(path);
  const prefix = archivePrefix(zip);
  const byteorder = zip.entries.get(`${prefix}byteorder`);
  if (byteorder) {
    const bo = new TextDecoder().decode(readZipEntry(zip, byteorder)).trim();
    if (bo !== "little") throw new ConvertError(path, `byte order ${JSON.stringify(bo)} is not supported (only little-endian)`, "unsupported");
  }
  const pkl = readZipEntry(zip, zip.entries.get(`${prefix}data.pkl`)!);
  const storages = new Map<string, { ref: StorageRef; entry: ZipEntry }>();
  let root: unknown;
  try {
    root = unpickle(pkl, {
      callables: CALLABLES,
      tags: TAGS,
      persistentLoad: (pid) => {
        if (!(pid instanceof PyTuple) || pid.items.length !== 5 || pid.items[0] !== "storage") {
          throw new PickleError("pickle: persistent id is not ('storage', type, key, location, numel)");
        }
        const [, type, key, , n] = pid.items;
        if (!(type instanceof PyGlobal) || type.module !== "torch" || !(type.name in STORAGE_DTYPES)) {
          throw new PickleError("pickle: persistent id has no storage type");
        }
        if (typeof key !== "string" || typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) {
          throw new PickleError("pickle: bad storage key or size in a persistent id");
        }
        const known = storages.get(key);
        if (known) return known.ref;
        const entry = zip.entries.get(`${prefix}data/${key}`);
        if (!entry) throw new PickleError(`pickle: storage ${key} has no ${prefix}data/${key} entry in the zip`);
        const dtype = STORAGE_DTYPES[type.name];
        if (entry.size < n * DTYPE_BYTES[dtype]) {
          throw new PickleError(`pickle: storage ${key} holds ${entry.size} bytes, fewer than ${n} ${dtype} elements`);
        }
        const ref = new StorageRef(dtype, key, n);
        storages.set(key, { ref, entry });
        return ref;
      },
    });
  } catch (e) {
    if (e instanceof PickleError) throw new ConvertError(path, `${prefix}data.pkl: ${e.message}`, "invalid_file", { cause: e });
    throw e;
  }
  if (!(root instanceof PyDict)) throw new ConvertError(path, "the checkpoint is not a state dict (its top level is not a dict)");
  let cache: { key: string; bytes: Uint8Array } | undefined;
  const tensors: SourceTensor[] = [];
  /** Per storage, the bytes its views reach: a storage may not declare far more than that (it would be inflated whole). */
  const reached = new Map<string, number>();
  for (const [name, value] of root.entries) {
    if (typeof name !== "string") throw new ConvertError(path, `state dict key ${String(name)} is not a string`);
    if (!(value instanceof TensorView)) {
      throw new ConvertError(path, `state dict entry ${name} is a ${value instanceof PyDict ? "nested dict" : typeof value}, not a tensor (expected a flat state dict)`);
    }
    // the furthest element the view touches must lie inside the storage
    let last = value.offset;
    for (let d = 0; d < value.shape.length; d++) if (value.shape[d] > 0) last += (value.shape[d] - 1) * value.stride[d];
    if (numel(value.shape) > 0 && last >= value.storage.numel) {
      throw new ConvertError(path, `tensor ${name} ${shapeText(value.shape)} reaches element ${last} of a storage of ${value.storage.numel}`);
    }
    const { entry } = storages.get(value.storage.key)!;
    const elem = DTYPE_BYTES[value.storage.dtype];
    if (numel(value.shape) > 0) reached.set(value.storage.key, Math.max(reached.get(value.storage.key) ?? 0, (last + 1) * elem));
    tensors.push({
      name,
      dtype: value.storage.dtype,
      shape: value.shape,
      file: path,
      readBytes: () => {
        if (cache?.key !== value.storage.key) cache = { key: value.storage.key, bytes: readZipEntry(zip, entry) };
        return gather(cache.bytes, value, elem);
      },
    });
  }
  for (const [key, { entry }] of storages) {
    const used = reached.get(key) ?? 0;
    if (entry.size > used + Math.max(used, 1 << 20)) {
      throw new ConvertError(path, `storage ${key} declares ${entry.size} bytes but its tensors use ${used}: refusing to inflate it (corrupt or hostile file)`);
    }
  }
  return { path, tensors };
}

/** A tensor for {@link encodeTorchCheckpoint}: contiguous row-major little-endian bytes. */
export interface TorchTensorEntry {
  name: string;
  /** "F32", "F16" or "BF16". */
  dtype: string;
  shape: readonly number[];
  data: Uint8Array;
}

/** Options of {@link encodeTorchCheckpoint}. */
export interface TorchWriteOptions {
  /** The zip's top directory (torch uses "archive" or the file's stem). Default "archive". */
  archive?: string;
  /** Store the state dict as a `collections.OrderedDict` (as `model.state_dict()` is) instead of a dict. */
  ordered?: boolean;
  /** Deflate the storages (torch stores them; deflated entries test the reader). */
  deflate?: boolean;
  /** Write zip64 records (as torch does for files over 4 GiB). */
  zip64?: boolean;
}

/**
 * Serializes a state dict the way `torch.save` does (pickle protocol 2 with
 * `_rebuild_tensor_v2` and persistent storage ids, in a zip with 64-byte aligned storages).
 * For test fixtures; tensors are held in memory.
 */
export function encodeTorchCheckpoint(tensors: readonly TorchTensorEntry[], opts: TorchWriteOptions = {}): Uint8Array {
  const archive = opts.archive ?? "archive";
  const p = new PickleBuilder().proto(2);
  if (opts.ordered) p.global("collections", "OrderedDict").emptyTuple().reduce().put();
  else p.emptyDict().put();
  const files: Array<{ name: string; data: Uint8Array }> = [];
  if (tensors.length > 0) p.mark();
  tensors.forEach((t, i) => {
    const storage = DTYPE_STORAGES[t.dtype];
    if (!storage) throw new ConvertError(t.name, `cannot write dtype ${t.dtype} to a PyTorch checkpoint`);
    const n = numel(t.shape);
    if (t.data.length !== n * DTYPE_BYTES[t.dtype]) throw new ConvertError(t.name, `data has ${t.data.length} bytes, expected ${n * DTYPE_BYTES[t.dtype]}`);
    const stride: number[] = [];
    let s = 1;
    for (let d = t.shape.length - 1; d >= 0; d--) {
      stride[d] = s;
      s *= t.shape[d];
    }
    p.str(t.name).put();
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.mark();
    // persistent id ('storage', torch.XStorage, key, 'cpu', numel)
    p.mark().str("storage").global("torch", storage).str(String(i)).str("cpu").int(n).tuple().put().binpersid().put();
    p.int(0);
    p.mark();
    for (const d of t.shape) p.int(d);
    p.tuple().put();
    p.mark();
    for (const d of stride) p.int(d);
    p.tuple().put();
    p.bool(false);
    p.global("collections", "OrderedDict").emptyTuple().reduce().put();
    p.tuple().put().reduce().put();
    files.push({ name: `${archive}/data/${i}`, data: t.data });
  });
  if (tensors.length > 0) p.setitems();
  p.stop();
  const all = [
    { name: `${archive}/data.pkl`, data: p.finish() },
    { name: `${archive}/byteorder`, data: new TextEncoder().encode("little") },
    ...files,
    { name: `${archive}/version`, data: new TextEncoder().encode("3\n") },
    { name: `${archive}/.data/serialization_id`, data: new TextEncoder().encode("1234567890123456789012345678901234567890") },
  ];
  return encodeZip(all, { align: 64, zip64: opts.zip64, deflate: opts.deflate ? new Set(files.map((f) => f.name)) : undefined });
}

/** Writes a PyTorch checkpoint file atomically (see {@link encodeTorchCheckpoint}). */
export async function writeTorchCheckpoint(path: string, tensors: readonly TorchTensorEntry[], opts: TorchWriteOptions = {}): Promise<void> {
  await writeFileAtomic(path, [encodeTorchCheckpoint(tensors, opts)]);
}
