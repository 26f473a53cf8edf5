"""Messages of the objects in 3-D (:class:`~sam2_ros.tracking.objects3d.Object3D`): pure
functions, no node.

* :func:`markers`: visualization_msgs/MarkerArray for RViz: per object with 3-D, a CUBE
  (namespace ``objects``, id = the object's id) at the centre of its axis-aligned box, the box's
  sides as its scale, in the object's colour (the overlay's), and a TEXT_VIEW_FACING (namespace
  ``objects/labels``, same id: a marker is named by its namespace and id, so the text needs a
  namespace of its own) above it: class label, id and distance. Objects that had markers on the
  previous frame and have none now (removed, occluded, lost, without depth) get DELETE markers.
* :func:`point_cloud`: sensor_msgs/PointCloud2 of every object's points: fields x, y, z float32
  and ``id`` uint16 (the object's id), 16 bytes a point, little-endian, one row, dense.
  :func:`point_cloud_to_arrays` reads one back (any field order, padding or byte order).
* :func:`detections_3d`: vision_msgs/Detection3DArray where vision_msgs is installed
  (:func:`load`; there is no wheel of it): per object with 3-D, ``id`` = the object's id, the
  axis-aligned box (centre, size; identity orientation), ``results[0]``: class label (else the
  id) with the object-presence score and, as its pose, the centroid. Both layouts are handled:
  vision_msgs >= 4 (``id``, ``results[i].hypothesis.class_id``) and 3.x (``tracking_id``,
  ``results[i].id``).

Headers: every output carries the colour image's stamp and the depth image's optical frame
(:func:`output_header`). Message classes are imported when first used (importing this module
needs no ROS).
"""
from __future__ import annotations

import array
from typing import Iterable, Sequence, Set, Tuple

import numpy as np

from sam2_ros.tracking.objects3d import Object3D, Objects3DError
from sam2_ros.visualization import color_for_id

__all__ = ['NS', 'NS_LABELS', 'CLOUD_DTYPE', 'output_header', 'markers', 'point_cloud',
           'point_cloud_to_arrays', 'load', 'detections_3d']

NS, NS_LABELS = 'objects', 'objects/labels'
CUBE_ALPHA = 0.35
TEXT_HEIGHT = 0.05  # metres
MIN_SIDE = 0.005  # metres: a flat side still shows
CLOUD_DTYPE = np.dtype({'names': ['x', 'y', 'z', 'id'], 'formats': ['<f4', '<f4', '<f4', '<u2'],
                        'offsets': [0, 4, 8, 12], 'itemsize': 16})  # 16 bytes: aligned, as PCL pads


def output_header(colour_header, depth_header):
    """A std_msgs/Header stamped as the colour image, in the depth image's frame."""
    from std_msgs.msg import Header
    return Header(stamp=colour_header.stamp, frame_id=depth_header.frame_id)


def _label_text(obj: Object3D) -> str:
    name = f'{obj.label} {obj.obj_id}' if obj.label else f'object {obj.obj_id}'
    return f'{name}\n{float(np.linalg.norm(obj.centroid)):.2f} m'


def markers(header, objects: Sequence[Object3D], previous_ids: Iterable[int] = (),
            lifetime_s: float = 0.0) -> Tuple[object, Set[int]]:
    """MarkerArray (see the module doc) and the ids shown (pass them as ``previous_ids`` on the
    next frame, so that objects gone since get DELETE markers). ``lifetime_s`` > 0: RViz drops
    markers not refreshed within it (0: kept until deleted)."""
    from builtin_interfaces.msg import Duration
    from visualization_msgs.msg import Marker, MarkerArray

    out = MarkerArray()
    life = Duration(sec=int(lifetime_s), nanosec=int(round((lifetime_s % 1.0) * 1e9)))
    shown = set()
    for obj in objects:
        if not obj.has_3d:
            continue
        oid = int(obj.obj_id)
        shown.add(oid)
        r, g, b = (c / 255.0 for c in color_for_id(oid))
        cube = Marker(header=header, ns=NS, id=oid, type=Marker.CUBE, action=Marker.ADD, lifetime=life)
        cube.pose.position.x, cube.pose.position.y, cube.pose.position.z = (float(v) for v in obj.center)
        cube.pose.orientation.w = 1.0
        cube.scale.x, cube.scale.y, cube.scale.z = (max(float(v), MIN_SIDE) for v in obj.extent)
        cube.color.r, cube.color.g, cube.color.b, cube.color.a = r, g, b, CUBE_ALPHA
        text = Marker(header=header, ns=NS_LABELS, id=oid, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                      lifetime=life, text=_label_text(obj))
        text.pose.position.x = float(obj.center[0])
        # above the box: y points down in the optical frame
        text.pose.position.y = float(obj.center[1] - obj.extent[1] / 2 - TEXT_HEIGHT)
        text.pose.position.z = float(obj.center[2])
        text.pose.orientation.w = 1.0
        text.scale.z = TEXT_HEIGHT
        text.color.r, text.color.g, text.color.b, text.color.a = r, g, b, 1.0
        out.markers.extend((cube, text))
    for oid in sorted(set(int(i) for i in previous_ids) - shown):
        for ns in (NS, NS_LABELS):
            out.markers.append(Marker(header=header, ns=ns, id=oid, action=Marker.DELETE))
    return out, shown


def point_cloud(header, objects: Sequence[Object3D]):
    """PointCloud2 of the objects' points (those computed ``with_points``), each point tagged
    with its object's id (ids must fit uint16: 0 to 65535)."""
    from sensor_msgs.msg import PointCloud2, PointField

    parts = [o for o in objects if o.points is not None and len(o.points)]
    n = sum(len(o.points) for o in parts)
    cloud = np.zeros(n, CLOUD_DTYPE)  # zeros: the padding bytes too
    i = 0
    for o in parts:
        if not 0 <= int(o.obj_id) <= 0xFFFF:
            raise Objects3DError(f'object id {o.obj_id} does not fit the point cloud\'s uint16 id field (0 to 65535)')
        k = len(o.points)
        cloud['x'][i:i + k], cloud['y'][i:i + k], cloud['z'][i:i + k] = o.points.T
        cloud['id'][i:i + k] = o.obj_id
        i += k
    msg = PointCloud2(header=header, height=1, width=n, is_bigendian=False, point_step=CLOUD_DTYPE.itemsize,
                      row_step=CLOUD_DTYPE.itemsize * n, is_dense=True)
    msg.fields = [PointField(name=name, offset=CLOUD_DTYPE.fields[name][1], datatype=kind, count=1)
                  for name, kind in (('x', PointField.FLOAT32), ('y', PointField.FLOAT32),
                                     ('z', PointField.FLOAT32), ('id', PointField.UINT16))]
    data = array.array('B')
    data.frombytes(cloud.view(np.uint8))
    msg.data = data
    return msg


_POINT_FIELD_TYPES = {1: 'i1', 2: 'u1', 3: 'i2', 4: 'u2', 5: 'i4', 6: 'u4', 7: 'f4', 8: 'f8'}


def point_cloud_to_arrays(msg) -> Tuple[np.ndarray, np.ndarray]:
    """PointCloud2 with x, y, z and id fields -> points (M, 3) float32 and ids (M,) uint16.
    Rows may be padded (``row_step``); either byte order."""
    order = '>' if msg.is_bigendian else '<'
    fields = {f.name: f for f in msg.fields}
    missing = {'x', 'y', 'z', 'id'} - set(fields)
    if missing:
        raise ValueError(f'the point cloud has no field(s) {sorted(missing)}; it has {sorted(fields)}')
    dtype = np.dtype({'names': ['x', 'y', 'z', 'id'],
                      'formats': [order + _POINT_FIELD_TYPES[fields[n].datatype] for n in ('x', 'y', 'z', 'id')],
                      'offsets': [fields[n].offset for n in ('x', 'y', 'z', 'id')],
                      'itemsize': int(msg.point_step)})
    h, w, row = int(msg.height), int(msg.width), int(msg.row_step)
    raw = np.frombuffer(msg.data, np.uint8)
    if raw.size != row * h or row < w * dtype.itemsize:
        raise ValueError(f'the point cloud\'s data is {raw.size} bytes, its header says {h} rows of {row} bytes '
                         f'({w} points of {dtype.itemsize})')
    pts = np.ascontiguousarray(raw.reshape(h, row)[:, :w * dtype.itemsize]).view(dtype).reshape(-1)
    xyz = np.stack([pts['x'], pts['y'], pts['z']], axis=1).astype(np.float32)
    return xyz, pts['id'].astype(np.uint16)


def load():
    """The ``vision_msgs.msg`` module, or None when vision_msgs is not installed."""
    try:
        import vision_msgs.msg as module
    except ImportError:
        return None
    return module


def detections_3d(module, header, objects: Sequence[Object3D]):
    """Detection3DArray (see the module doc) of the objects with 3-D."""
    out = module.Detection3DArray()
    out.header = header
    for obj in objects:
        if not obj.has_3d:
            continue
        det = module.Detection3D()
        det.header = header
        if hasattr(det, 'id'):
            det.id = str(obj.obj_id)
        elif hasattr(det, 'tracking_id'):  # vision_msgs 3.x
            det.tracking_id, det.is_tracking = str(obj.obj_id), True
        pose = det.bbox.center
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in obj.center)
        pose.orientation.w = 1.0
        det.bbox.size.x, det.bbox.size.y, det.bbox.size.z = (float(v) for v in obj.extent)
        hyp = module.ObjectHypothesisWithPose()
        target = hyp.hypothesis if hasattr(hyp, 'hypothesis') else hyp
        class_id = obj.label or str(obj.obj_id)
        if hasattr(target, 'class_id'):
            target.class_id = class_id
        else:
            target.id = class_id
        target.score = float(obj.score)
        p = hyp.pose.pose.position
        p.x, p.y, p.z = (float(v) for v in obj.centroid)
        hyp.pose.pose.orientation.w = 1.0
        det.results.append(hyp)
        out.detections.append(det)
    return out

