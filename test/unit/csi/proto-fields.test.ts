import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadSync } from '@grpc/proto-loader';
import { CSI_LOADER_OPTIONS, CSI_PROTO_PATH, loadCsi } from '../../../src/csi/proto.js';

// Field numbers copied from the official csi.proto (container-storage-interface/spec v1.12;
// VolumeCondition numbers from v1.5–v1.12). A renumbered field would break wire compatibility.
const EXPECTED: Record<string, Record<string, number>> = {
  GetPluginInfoResponse: { name: 1, vendor_version: 2, manifest: 3 },
  GetPluginCapabilitiesResponse: { capabilities: 1 },
  ProbeResponse: { ready: 1 },
  NodePublishVolumeRequest: {
    volume_id: 1, publish_context: 2, staging_target_path: 3, target_path: 4,
    volume_capability: 5, readonly: 6, secrets: 7, volume_context: 8,
  },
  NodeUnpublishVolumeRequest: { volume_id: 1, target_path: 2 },
  NodeGetVolumeStatsRequest: { volume_id: 1, volume_path: 2, staging_target_path: 3 },
  NodeGetVolumeStatsResponse: { usage: 1, volume_condition: 2 },
  VolumeUsage: { available: 1, total: 2, used: 3, unit: 4 },
  VolumeCondition: { abnormal: 1, message: 2 },
  NodeGetInfoResponse: { node_id: 1, max_volumes_per_node: 2, accessible_topology: 3 },
  VolumeCapability: { block: 1, mount: 2, access_mode: 3 },
  CapacityRange: { required_bytes: 1, limit_bytes: 2 },
  Volume: { capacity_bytes: 1, volume_id: 2, volume_context: 3, content_source: 4, accessible_topology: 5 },
  CreateVolumeRequest: {
    name: 1, capacity_range: 2, volume_capabilities: 3, parameters: 4, secrets: 5,
    volume_content_source: 6, accessibility_requirements: 7, mutable_parameters: 8,
  },
  DeleteVolumeRequest: { volume_id: 1, secrets: 2 },
  ValidateVolumeCapabilitiesRequest: {
    volume_id: 1, volume_context: 2, volume_capabilities: 3, parameters: 4, secrets: 5, mutable_parameters: 6,
  },
  ValidateVolumeCapabilitiesResponse: { confirmed: 1, message: 2 },
  NodeStageVolumeRequest: {
    volume_id: 1, publish_context: 2, staging_target_path: 3, volume_capability: 4, secrets: 5, volume_context: 6,
  },
  ControllerPublishVolumeRequest: { volume_id: 1, node_id: 2, volume_capability: 3, readonly: 4, secrets: 5, volume_context: 6 },
};

const ENUMS: Record<string, Record<string, number>> = {
  'VolumeCapability.AccessMode.Mode': { SINGLE_NODE_WRITER: 1, SINGLE_NODE_READER_ONLY: 2, MULTI_NODE_READER_ONLY: 3, MULTI_NODE_MULTI_WRITER: 5 },
  'NodeServiceCapability.RPC.Type': { STAGE_UNSTAGE_VOLUME: 1, GET_VOLUME_STATS: 2, VOLUME_CONDITION: 4 },
  'ControllerServiceCapability.RPC.Type': { CREATE_DELETE_VOLUME: 1, PUBLISH_UNPUBLISH_VOLUME: 2, VOLUME_CONDITION: 11 },
  'PluginCapability.Service.Type': { CONTROLLER_SERVICE: 1, VOLUME_ACCESSIBILITY_CONSTRAINTS: 2 },
  'VolumeUsage.Unit': { BYTES: 1, INODES: 2 },
};

const definition = loadSync(CSI_PROTO_PATH, CSI_LOADER_OPTIONS);

test('message field numbers match the CSI spec', () => {
  for (const [message, fields] of Object.entries(EXPECTED)) {
    const type = (definition[`csi.v1.${message}`] as { type: { field: Array<{ name: string; number: number }> } }).type;
    for (const [name, number] of Object.entries(fields)) {
      assert.equal(type.field.find((f) => f.name === name)?.number, number, `${message}.${name}`);
    }
  }
});

test('enum values match the CSI spec', () => {
  for (const [name, values] of Object.entries(ENUMS)) {
    // Nested types and enums live inside their message's descriptor, not at the top level.
    type Descriptor = { name: string; nestedType: Descriptor[]; enumType: EnumDescriptor[] };
    type EnumDescriptor = { name: string; value: Array<{ name: string; number: number }> };
    const [top, ...rest] = name.split('.');
    const enumName = rest.pop()!;
    let message = (definition[`csi.v1.${top}`] as { type: Descriptor }).type;
    for (const nested of rest) message = message.nestedType.find((n) => n.name === nested)!;
    const enumType = message.enumType.find((e) => e.name === enumName)!;
    for (const [value, number] of Object.entries(values)) {
      assert.equal(enumType.value.find((v) => v.name === value)?.number, number, `${name}.${value}`);
    }
  }
});

test('the three services are in package csi.v1 with the spec paths', () => {
  const csi = loadCsi();
  assert.equal(csi.Node.service['NodePublishVolume']!.path, '/csi.v1.Node/NodePublishVolume');
  assert.equal(csi.Identity.service['Probe']!.path, '/csi.v1.Identity/Probe');
  assert.equal(csi.Controller.service['CreateVolume']!.path, '/csi.v1.Controller/CreateVolume');
});
