/* doublesparse engine register map. Generated from rtl/engine/regmap.py by
 * `doublesparse docs`; do not edit by hand. */
#ifndef DOUBLESPARSE_ENGINE_H
#define DOUBLESPARSE_ENGINE_H

#define DS_ADDR_REGION_SHIFT 24u
#define DS_ADDR(region, offset) (((region) << DS_ADDR_REGION_SHIFT) | (offset))
/* word w of entry e in a chunk region; word_bits: 3 for scan_width 16, 4 for 32, 5 for 64 */
#define DS_CHUNK_OFFSET(e, w, word_bits) (((e) << (word_bits)) | (w))

#define DS_REGION_CSR 0u
#define DS_REGION_ACT 1u
#define DS_REGION_KMAP 2u
#define DS_REGION_MULT 3u
#define DS_REGION_SHIFT 4u
#define DS_REGION_BIAS 6u
#define DS_REGION_OUT 5u
#define DS_REGION_WGT 16u  /* + PE index */
#define DS_REGION_WVAL 48u  /* + PE index */

#define DS_REG_CTRL 0x00u
#define DS_CTRL_START_SHIFT 0u
#define DS_CTRL_START_MASK 0x00000001u
#define DS_CTRL_ENCODE_SHIFT 1u
#define DS_CTRL_ENCODE_MASK 0x00000002u
#define DS_CTRL_ABORT_SHIFT 2u
#define DS_CTRL_ABORT_MASK 0x00000004u
#define DS_REG_STATUS 0x01u
#define DS_STATUS_BUSY_SHIFT 0u
#define DS_STATUS_BUSY_MASK 0x00000001u
#define DS_STATUS_DONE_SHIFT 1u
#define DS_STATUS_DONE_MASK 0x00000002u
#define DS_STATUS_ERROR_SHIFT 4u
#define DS_STATUS_ERROR_MASK 0x000000f0u
#define DS_REG_C 0x02u
#define DS_REG_H 0x03u
#define DS_REG_W 0x04u
#define DS_REG_K 0x05u
#define DS_REG_R 0x06u
#define DS_REG_S 0x07u
#define DS_REG_STRIDE 0x08u
#define DS_REG_PAD 0x09u
#define DS_REG_F 0x0au
#define DS_REG_NCH 0x0bu
#define DS_REG_HO 0x0cu
#define DS_REG_WO 0x0du
#define DS_REG_MODE 0x0eu
#define DS_MODE_RAW_SHIFT 0u
#define DS_MODE_RAW_MASK 0x00000001u
#define DS_MODE_RELU_SHIFT 1u
#define DS_MODE_RELU_MASK 0x00000002u
#define DS_REG_CYCLES 0x10u
#define DS_REG_MACS 0x11u
#define DS_REG_IGNORED 0x12u
#define DS_REG_PE_BUSY 0x20u  /* + PE index */
#define DS_REG_PE_MACS 0x60u  /* + PE index */

#define DS_ERR_OK 0u
#define DS_ERR_BAD_SHAPE 1u
#define DS_ERR_BAD_DESC 2u
#define DS_ERR_TOO_BIG 3u
#define DS_ERR_PE_FAULT 4u
#define DS_ERR_NOT_INT8 5u
#define DS_ERR_ABORTED 6u

/* host words per activation chunk: ceil(9 S / 32); S = 64: 18 words, 576 bits */

#endif
