/* proto.c: anchors the generated protobuf-c library (so it builds with no .proto yet). */
int meshscope_proto_anchor;
