mod data_chunk;
mod logical_type;
mod vector;

pub(crate) type RawLogicalTypeId = u32;

pub use data_chunk::DataChunkHandle;
pub use logical_type::{LogicalTypeHandle, LogicalTypeId};
pub use vector::*;
