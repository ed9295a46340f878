/**
 * ffi/: libvmmapi through Deno FFI, the only code that touches `Deno.dlopen` and pointers.
 *
 * @example
 * const api = loadVmmapi({ path: Deno.env.get("BHYVE_GDBSTUB_VMMAPI") });
 * const vm = api.open("freebsd14");
 * console.log(vm.activeCpus());
 * vm.close();
 * api.close();
 *
 * @module
 */
import type { Vmmapi } from "../vmm/vmmapi.ts";
import { loadLibrary, type LoadOptions } from "./library.ts";
import { openVm } from "./vm.ts";
import { vmDevicePath } from "./paths.ts";

export {
  DEFAULT_LIBRARIES,
  LIBRARY_DIR,
  type LoadOptions,
  otherSonames,
  VmmapiLoadError,
} from "./library.ts";
export { decodeCpuset } from "./vm.ts";
export { errnoName } from "./errno.ts";
export { devmemPath, vmDevicePath } from "./paths.ts";

/** Options for {@link loadVmmapi}: `path` may be undefined (then the defaults are tried). */
export interface VmmapiOptions {
  path?: string | undefined;
  /** Where to look for other libvmmapi.so.* after the known sonames (default /usr/lib). */
  libraryDir?: string;
}

/**
 * Loads libvmmapi (the explicit path, else libvmmapi.so.7, .so.6, .so.5, then any other
 * /usr/lib/libvmmapi.so.*) and detects its API
 * generation. Throws {@link VmmapiLoadError} naming every path tried.
 */
export function loadVmmapi(options: VmmapiOptions = {}): Vmmapi {
  const loadOptions: LoadOptions = {};
  if (options.path !== undefined) loadOptions.path = options.path;
  if (options.libraryDir !== undefined) loadOptions.libraryDir = options.libraryDir;
  const lib = loadLibrary(loadOptions);
  let open = 0;
  return {
    generation: lib.generation,
    path: lib.path,
    devicePath: vmDevicePath,
    open(name, openOptions) {
      const vm = openVm(lib, name, openOptions?.writable ?? false);
      open++;
      const close = vm.close.bind(vm);
      vm.close = () => {
        close();
        open--;
      };
      return vm;
    },
    close() {
      if (open > 0) throw new Error(`libvmmapi still has ${open} open VM(s)`);
      lib.close();
    },
  };
}
