/*
 * The framebuffer segment.
 *
 * bhyve's fbuf device (-s SLOT,fbuf; usr.sbin/bhyve/pci_fbuf.c) creates
 * device memory with vm_create_devmem(ctx, VM_FRAMEBUFFER, "framebuffer",
 * FB_SIZE) and, once its BAR 1 has an address (a 32-bit memory BAR from
 * bhyve's PCI window, which starts at 3 GiB), maps the whole segment there
 * with vm_mmap_memseg(ctx, address, VM_FRAMEBUFFER, 0, FB_SIZE,
 * PROT_READ | PROT_WRITE).  The guest draws into it; bhyve's VNC server
 * reads it.  Like the boot ROM, another process reads it only through
 * /dev/vmm.io/NAME.framebuffer (devmem.c).
 *
 * The test VM's stand-in (--fbuf): the segment at TVM_FBUF_GPA, holding a
 * signature string and a row of known pixels (testvm_abi.h) a debugger can
 * recognise.
 */
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>

#include "testvm.h"

static struct devmem fbuf;

void
fbuf_create(struct vm *vm, const char *dir)
{
	uint8_t *fb;
	uint32_t pixel;

	fbuf = (struct devmem){
		.name = "framebuffer",
		.segid = vm->vmm_version >= 15 ? VM_FRAMEBUFFER_15 : VM_FRAMEBUFFER,
		/* FB_SIZE: 32 MiB (up to 3840x2160) on 15, 16 MiB before. */
		.seg_size = (vm->vmm_version >= 15 ? 32ULL : 16ULL) << 20,
		.gpa = TVM_FBUF_GPA,
		.segoff = 0,
		.prot = PROT_READ | PROT_WRITE,
	};
	fbuf.len = fbuf.seg_size;
	fb = devmem_create(vm, &fbuf, dir);	/* zeroed, as pci_fbuf_init leaves it */
	strcpy((char *)fb, TVM_FBUF_SIGNATURE);
	for (int i = 0; i < TVM_FBUF_NPIXELS; i++) {
		pixel = TVM_FBUF_PIXEL(i);
		memcpy(fb + TVM_FBUF_PIXELS_OFF + 4 * i, &pixel, 4);
	}
}
