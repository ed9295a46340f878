/*
 * The smallest ACPI a Linux guest needs to find its vCPUs: RSDP -> XSDT ->
 * MADT.
 *
 * An x86-64 Linux learns which CPUs exist from ACPI's MADT or from an
 * Intel MP table; the PVH boot has no BIOS to leave an MP table behind, and
 * bhyve itself gives guests ACPI tables, so the MADT is the way.  It lists
 * one enabled local APIC per vCPU (APIC id = vCPU id, as CPUID reports) and
 * sets PCAT_COMPAT: KVM's in-kernel 8259s are there, and with no I/O APIC
 * listed Linux routes the PIT's IRQ 0 through them (virtual-wire mode),
 * which KVM delivers through LINT0 without any routing set-up here.  No
 * FADT/DSDT: nothing the kernel reaches on the slow dev-machine KVM needs
 * the ACPI interpreter, and leaving it out keeps ACPI's power management
 * (and its hardware-reduced shortcuts) off.
 */
#include <stddef.h>
#include <string.h>

#include "testvm.h"

#define ACPI_OEM_ID	"TESTVM"
#define ACPI_OEM_TABLE	"TESTVMHV"

#define MADT_LAPIC		0	/* entry type: processor local APIC */
#define MADT_LAPIC_ENABLED	1
#define MADT_PCAT_COMPAT	1	/* flags: dual 8259s present */

struct __attribute__((packed)) acpi_rsdp {
	char signature[8];		/* "RSD PTR " */
	uint8_t checksum;		/* over the first 20 bytes */
	char oem_id[6];
	uint8_t revision;		/* 2: ACPI 2.0+, has an XSDT */
	uint32_t rsdt_address;
	uint32_t length;
	uint64_t xsdt_address;
	uint8_t extended_checksum;	/* over all 36 bytes */
	uint8_t reserved[3];
};

struct __attribute__((packed)) acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
};

struct __attribute__((packed)) madt_lapic {
	uint8_t type;
	uint8_t length;			/* 8 */
	uint8_t processor_uid;
	uint8_t apic_id;
	uint32_t flags;
};

static uint8_t
checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (len-- > 0)
		sum += *b++;
	return (uint8_t)-sum;
}

static void
header(struct acpi_header *h, const char *sig, uint32_t len, uint8_t rev)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->signature, sig, 4);
	h->length = len;
	h->revision = rev;
	memcpy(h->oem_id, ACPI_OEM_ID, 6);
	memcpy(h->oem_table_id, ACPI_OEM_TABLE, 8);
	h->oem_revision = 1;
	memcpy(h->creator_id, "TVMH", 4);
	h->creator_revision = 1;
}

/* MADT at `gpa`; returns its length. */
static uint32_t
build_madt(struct vm *vm, uint64_t gpa)
{
	uint8_t *t = vm->mem + gpa;
	uint32_t len = sizeof(struct acpi_header) + 8;
	uint32_t lapic_addr = (uint32_t)TVM_LAPIC_GPA, flags = MADT_PCAT_COMPAT;

	memcpy(t + sizeof(struct acpi_header), &lapic_addr, 4);
	memcpy(t + sizeof(struct acpi_header) + 4, &flags, 4);
	for (int i = 0; i < vm->ncpus; i++) {
		struct madt_lapic e = {
			.type = MADT_LAPIC, .length = sizeof(e),
			.processor_uid = (uint8_t)i, .apic_id = (uint8_t)i,
			.flags = MADT_LAPIC_ENABLED,
		};
		memcpy(t + len, &e, sizeof(e));
		len += sizeof(e);
	}
	header((struct acpi_header *)t, "APIC", len, 4);
	t[offsetof(struct acpi_header, checksum)] = checksum(t, len);
	return len;
}

uint64_t
acpi_build(struct vm *vm, uint64_t gpa, uint64_t size)
{
	uint64_t rsdp_gpa = gpa, xsdt_gpa = gpa + 0x40, madt_gpa = gpa + 0x100;
	uint32_t xsdt_len = sizeof(struct acpi_header) + 8;
	struct acpi_rsdp rsdp = {
		.signature = "RSD PTR ", .revision = 2,
		.length = sizeof(rsdp), .xsdt_address = xsdt_gpa,
	};
	uint8_t *xsdt = vm->mem + xsdt_gpa;

	if (madt_gpa + sizeof(struct acpi_header) + 8 +
	    (uint64_t)vm->ncpus * sizeof(struct madt_lapic) > gpa + size)
		die("ACPI tables do not fit");
	memset(vm->mem + gpa, 0, size);
	build_madt(vm, madt_gpa);

	header((struct acpi_header *)xsdt, "XSDT", xsdt_len, 1);
	memcpy(xsdt + sizeof(struct acpi_header), &madt_gpa, 8);
	xsdt[offsetof(struct acpi_header, checksum)] = checksum(xsdt, xsdt_len);

	memcpy(rsdp.oem_id, ACPI_OEM_ID, 6);
	rsdp.checksum = checksum(&rsdp, 20);
	rsdp.extended_checksum = checksum(&rsdp, sizeof(rsdp));
	memcpy(vm->mem + rsdp_gpa, &rsdp, sizeof(rsdp));
	return rsdp_gpa;
}
