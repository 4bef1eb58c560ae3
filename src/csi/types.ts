/**
 * The CSI messages this driver reads and writes, as @grpc/proto-loader hands them over with
 * the options in proto.ts (snake_case keys, enums as names, defaults filled in). Only the
 * fields the driver uses are typed.
 */
type StringMap = Record<string, string>;

export type AccessModeName =
  | 'UNKNOWN'
  | 'SINGLE_NODE_WRITER'
  | 'SINGLE_NODE_READER_ONLY'
  | 'MULTI_NODE_READER_ONLY'
  | 'MULTI_NODE_SINGLE_WRITER'
  | 'MULTI_NODE_MULTI_WRITER'
  | 'SINGLE_NODE_SINGLE_WRITER'
  | 'SINGLE_NODE_MULTI_WRITER';

export interface VolumeCapability {
  block?: Record<string, never> | null;
  mount?: { fs_type?: string; mount_flags?: string[]; volume_mount_group?: string } | null;
  access_type?: 'block' | 'mount';
  access_mode?: { mode?: AccessModeName | number } | null;
}

interface CapacityRange {
  required_bytes?: number;
  limit_bytes?: number;
}

export interface NodePublishVolumeRequest {
  volume_id: string;
  publish_context?: StringMap;
  staging_target_path?: string;
  target_path: string;
  volume_capability?: VolumeCapability | null;
  readonly: boolean;
  secrets?: StringMap;
  volume_context?: StringMap;
}

export interface NodeUnpublishVolumeRequest {
  volume_id: string;
  target_path: string;
}

export interface NodeGetVolumeStatsRequest {
  volume_id: string;
  volume_path: string;
  staging_target_path?: string;
}

interface VolumeUsage {
  available: number;
  total: number;
  used: number;
  unit: 'BYTES' | 'INODES';
}

export interface NodeGetVolumeStatsResponse {
  usage: VolumeUsage[];
  volume_condition: { abnormal: boolean; message: string };
}

export interface CreateVolumeRequest {
  name: string;
  capacity_range?: CapacityRange | null;
  volume_capabilities?: VolumeCapability[];
  parameters?: StringMap;
  secrets?: StringMap;
  volume_content_source?: unknown;
  accessibility_requirements?: unknown;
  mutable_parameters?: StringMap;
}

export interface CsiVolume {
  capacity_bytes: number;
  volume_id: string;
  volume_context: StringMap;
}

export interface ValidateVolumeCapabilitiesRequest {
  volume_id: string;
  volume_context?: StringMap;
  volume_capabilities?: VolumeCapability[];
  parameters?: StringMap;
  secrets?: StringMap;
  mutable_parameters?: StringMap;
}

export interface DeleteVolumeRequest {
  volume_id: string;
  secrets?: StringMap;
}
