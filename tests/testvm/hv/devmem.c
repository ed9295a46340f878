/*
 * Device-memory segments: what vm_create_devmem makes for bhyve.
 *
 * bhyve's boot ROM (bootrom.c) and its framebuffer (fbuf.c) live in memory
 * segments of their own beside system memory.  /dev/vmm/NAME does not map
 * them; vmm.ko gives each its own node, /dev/vmm.io/NAME.SEGNAME, which
 * another process maps at the offset within the segment
 * (sys/dev/vmm/vmm_dev.c, devmem_create_cdev).
 *
 * The test VM's stand-in for one segment: a memfd of the segment's size,
 * part of it mapped into the guest as one memory slot, and a node
 * $TESTVM_DIR/vmm.io/NAME.SEGNAME (a symlink to the memfd through /proc)
 * that another process opens and maps the same way.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testvm.h"

/* Memory slots 0 and 1 are system memory (vm.c); device memory follows. */
#define DEVMEM_FIRST_SLOT	2

static struct devmem *created[TVM_MAXDEVMEM];
static int ncreated;

/* The node $dir/vmm.io/NAME.SEGNAME, pointing at the segment's memfd. */
static void
make_node(struct vm *vm, struct devmem *d, const char *dir)
{
	char io_dir[PATH_MAX - 64], target[64];

	if ((size_t)snprintf(io_dir, sizeof(io_dir), "%s/vmm.io", dir) >=
	    sizeof(io_dir) - 64)
		die("%s: path too long", dir);
	if (mkdir(io_dir, 0755) < 0 && errno != EEXIST)
		die("%s: %s", io_dir, strerror(errno));
	if ((size_t)snprintf(d->node, sizeof(d->node), "%s/%s.%s", io_dir,
	    vm->name, d->name) >= sizeof(d->node))
		die("%s: path too long", io_dir);
	snprintf(target, sizeof(target), "/proc/%d/fd/%d", (int)getpid(), d->fd);
	unlink(d->node);	/* left by a VM of this name that was killed */
	if (symlink(target, d->node) < 0)
		die("%s: %s", d->node, strerror(errno));
}

/*
 * vm_create_devmem and vm_mmap_memseg in one: creates segment `d` (name,
 * segid, seg_size, gpa, len, segoff and prot filled in by the caller),
 * maps [segoff, segoff + len) of it into the guest at gpa and returns that
 * part, writable here, for the caller to fill.  Call before the vCPUs exist.
 */
uint8_t *
devmem_create(struct vm *vm, struct devmem *d, const char *dir)
{
	struct kvm_userspace_memory_region r;
	char label[64];
	uint8_t *host;

	if (ncreated >= TVM_MAXDEVMEM)
		die("too many device-memory segments");
	snprintf(label, sizeof(label), "testvm:%s", d->name);
	d->fd = memfd_create(label, MFD_CLOEXEC);
	if (d->fd < 0 || ftruncate(d->fd, (off_t)d->seg_size) < 0)
		die("%s segment: %s", d->name, strerror(errno));
	host = mmap(NULL, d->len, PROT_READ | PROT_WRITE, MAP_SHARED, d->fd,
	    (off_t)d->segoff);
	if (host == MAP_FAILED)
		die("mmap %s segment: %s", d->name, strerror(errno));
	r = (struct kvm_userspace_memory_region){
		.slot = DEVMEM_FIRST_SLOT + ncreated,
		.flags = d->prot & PROT_WRITE ? 0 : KVM_MEM_READONLY,
		.guest_phys_addr = d->gpa,
		.memory_size = d->len,
		.userspace_addr = (uint64_t)(uintptr_t)host,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		die("%s memory slot: %s", d->name, strerror(errno));
	make_node(vm, d, dir);
	created[ncreated++] = d;
	return host;
}

/* The segment with vmm.ko's id `segid`, or NULL. */
const struct devmem *
devmem_by_segid(int segid)
{
	for (int i = 0; i < ncreated; i++)
		if (created[i]->segid == segid)
			return created[i];
	return NULL;
}

/* The segments in guest-physical order (as vm_mmap_getnext walks them). */
int
devmem_list(const struct devmem **out, int max)
{
	int n = 0;

	for (int i = 0; i < ncreated && n < max; i++) {
		int at = n++;

		while (at > 0 && out[at - 1]->gpa > created[i]->gpa) {
			out[at] = out[at - 1];
			at--;
		}
		out[at] = created[i];
	}
	return n;
}

/* Removes the nodes (the memfds go with the process). */
void
devmem_cleanup(void)
{
	for (int i = 0; i < ncreated; i++) {
		if (created[i]->node[0] != '\0')
			unlink(created[i]->node);
		created[i]->node[0] = '\0';
	}
}
