/*
 * Guest loading.
 *
 * A loader is two steps: put an ELF image in guest RAM (elf_load, shared by
 * every guest type), then give the BSP its first state.  The demo guest
 * starts like a FreeBSD kernel under bhyveload: already in 64-bit mode, on
 * an identity map and a GDT built here in low memory.  A later PVH boot of
 * a Linux vmlinux (--linux, pvh.c) has its own second step (32-bit
 * protected mode, paging off, %ebx = start_info) and reuses elf_load.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testvm.h"

#define GDT_CODE64	0x00af9a000000ffffULL	/* selector 0x08 */
#define GDT_DATA	0x00cf92000000ffffULL	/* selector 0x10 */

#define CR0_PE	0x1ULL
#define CR0_MP	0x2ULL
#define CR0_ET	0x10ULL
#define CR0_NE	0x20ULL
#define CR0_WP	0x10000ULL
#define CR0_PG	0x80000000ULL
#define CR4_PAE	0x20ULL
#define EFER_LME	0x100ULL
#define EFER_LMA	0x400ULL
#define EFER_NXE	0x800ULL

/*
 * Map the whole file: a Debian vmlinux with DWARF is ~600 MB, of which only
 * the ~50 MB of PT_LOAD data is ever touched.
 */
int
elf_open(struct elf_file *f, const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	Elf64_Ehdr *eh;

	if (fd < 0 || fstat(fd, &st) < 0)
		die("%s: %s", path, strerror(errno));
	f->path = path;
	f->len = (size_t)st.st_size;
	f->img = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (f->img == MAP_FAILED)
		die("%s: mmap: %s", path, strerror(errno));
	eh = (Elf64_Ehdr *)f->img;
	if (f->len < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_machine != EM_X86_64 ||
	    eh->e_phoff + (uint64_t)eh->e_phnum * eh->e_phentsize > f->len)
		die("%s: not an x86-64 ELF file", path);
	return 0;
}

void
elf_close(struct elf_file *f)
{
	munmap((void *)(uintptr_t)f->img, f->len);
}

static const Elf64_Phdr *
elf_phdr(const struct elf_file *f, int i)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)f->img;

	return (const Elf64_Phdr *)(f->img + eh->e_phoff +
	    (size_t)i * eh->e_phentsize);
}

/* Copy every PT_LOAD segment to its physical address; return the entry. */
uint64_t
elf_load(struct vm *vm, const struct elf_file *f)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)f->img;

	for (int i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = elf_phdr(f, i);

		if (ph->p_type != PT_LOAD || ph->p_memsz == 0)
			continue;
		if (!vm_gpa_is_ram(vm, ph->p_paddr, ph->p_memsz) ||
		    ph->p_offset + ph->p_filesz > f->len)
			die("%s: segment at %#lx does not fit in guest RAM", f->path,
			    (unsigned long)ph->p_paddr);
		memcpy(vm->mem + ph->p_paddr, f->img + ph->p_offset, ph->p_filesz);
		memset(vm->mem + ph->p_paddr + ph->p_filesz, 0,
		    ph->p_memsz - ph->p_filesz);
	}
	return eh->e_entry;
}

/*
 * Find the note `owner`/`type` in the PT_NOTE segments; return its
 * descriptor (and length) or NULL.  Notes are 4-byte aligned (ELF64 notes
 * from GNU as are too, despite the spec's 8).
 */
const void *
elf_find_note(const struct elf_file *f, const char *owner, uint32_t type,
    size_t *desc_len)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)f->img;
	size_t olen = strlen(owner) + 1;

	for (int i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = elf_phdr(f, i);
		size_t off, end;

		if (ph->p_type != PT_NOTE || ph->p_offset + ph->p_filesz > f->len)
			continue;
		off = ph->p_offset;
		end = off + ph->p_filesz;
		while (off + sizeof(Elf64_Nhdr) <= end) {
			const Elf64_Nhdr *n = (const Elf64_Nhdr *)(f->img + off);
			size_t name = off + sizeof(*n);
			size_t desc = name + ((n->n_namesz + 3) & ~3u);

			if (desc + n->n_descsz > end)
				break;
			if (n->n_type == type && n->n_namesz == olen &&
			    memcmp(f->img + name, owner, olen) == 0) {
				*desc_len = n->n_descsz;
				return f->img + desc;
			}
			off = desc + ((n->n_descsz + 3) & ~3u);
		}
	}
	return NULL;
}

static void
put64(struct vm *vm, uint64_t gpa, uint64_t val)
{
	memcpy(vm->mem + gpa, &val, sizeof(val));
}

/* bhyveload's part: GDT, identity map of the first GiB, boot info. */
static void
build_boot_tables(struct vm *vm)
{
	struct tvm_boot_info bi = {
		.magic = TVM_BOOT_MAGIC, .ncpus = vm->ncpus,
		.lowmem = vm->lowmem, .highmem = vm->highmem,
	};

	put64(vm, TVM_BOOT_GDT_GPA + 0, 0);
	put64(vm, TVM_BOOT_GDT_GPA + 8, GDT_CODE64);
	put64(vm, TVM_BOOT_GDT_GPA + 16, GDT_DATA);
	put64(vm, TVM_BOOT_PML4_GPA, TVM_BOOT_PDPT_GPA | 0x3);
	put64(vm, TVM_BOOT_PDPT_GPA, TVM_BOOT_PD_GPA | 0x3);
	for (uint64_t i = 0; i < 512; i++)
		put64(vm, TVM_BOOT_PD_GPA + i * 8, (i << 21) | 0x83);
	memcpy(vm->mem + TVM_BOOT_INFO_GPA, &bi, sizeof(bi));
}

struct kvm_segment
flat_segment(uint16_t sel, uint8_t type, bool code64)
{
	struct kvm_segment s = {
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .s = 1, .g = 1, .l = code64, .db = !code64,
	};
	return s;
}

static void
set_bsp_long_mode(struct vm *vm, uint64_t entry)
{
	struct vcpu *bsp = &vm->vcpu[0];
	struct kvm_sregs s;
	struct kvm_regs r = {
		.rip = entry, .rsp = TVM_BOOT_STACK_GPA,
		.rdi = TVM_BOOT_INFO_GPA, .rflags = 0x2,
	};

	if (ioctl(bsp->fd, KVM_GET_SREGS, &s) < 0)
		die("KVM_GET_SREGS: %s", strerror(errno));
	s.cs = flat_segment(0x08, 0xb, true);
	s.ds = s.es = s.fs = s.gs = s.ss = flat_segment(0x10, 0x3, false);
	s.tr = (struct kvm_segment){ .limit = 0x67, .type = 0xb, .present = 1 };
	s.ldt = (struct kvm_segment){ .limit = 0xffff, .type = 0x2, .present = 1 };
	s.gdt.base = TVM_BOOT_GDT_GPA;
	s.gdt.limit = 3 * 8 - 1;
	s.idt.base = 0;
	s.idt.limit = 0;
	s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	s.cr3 = TVM_BOOT_PML4_GPA;
	s.cr4 = CR4_PAE;
	s.efer = EFER_LME | EFER_LMA | EFER_NXE;
	if (ioctl(bsp->fd, KVM_SET_SREGS, &s) < 0 ||
	    ioctl(bsp->fd, KVM_SET_REGS, &r) < 0)
		die("setting the BSP's boot state: %s", strerror(errno));
}

int
load_demo_guest(struct vm *vm, const char *elf_path)
{
	struct elf_file f;
	uint64_t entry;

	elf_open(&f, elf_path);
	entry = elf_load(vm, &f);
	elf_close(&f);

	build_boot_tables(vm);
	set_bsp_long_mode(vm, entry);
	return 0;
}
