"""The zlib preset dictionary of the .tslim format (version 1): JSON fragments that every
serialized ``torch.export`` program and every .tslim header repeats. zlib can refer back
into it from the first byte, which saves about 200 bytes per file (a fifth of an MLP's
graph). It is part of the format: changing one byte of it needs a new format version.
Fragments used most often come last (zlib reaches them with the shortest distances).
"""

from __future__ import annotations

_FRAGMENTS = [
    '"sym_int_values":{},"sym_bool_values":{},"is_single_tensor_return":false,"custom_obj_values":{},'
    '"sym_float_values":{}},"signature":{"input_specs":[',
    '"module_call_graph":[{"fqn":"","signature":{"inputs":[],"outputs":[],"in_spec":"[1, {\\"type\\": '
    '\\"builtins.tuple\\", \\"context\\": \\"null\\", \\"children_spec\\": [{\\"type\\": \\"builtins.tuple\\", '
    '\\"context\\": \\"null\\", \\"children_spec\\": [{\\"type\\": null, \\"context\\": null, \\"children_spec\\": '
    '[]}]}, {\\"type\\": \\"builtins.dict\\", \\"context\\": \\"[]\\", \\"children_spec\\": []}]}]",'
    '"out_spec":"[1, {\\"type\\": null, \\"context\\": null, \\"children_spec\\": []}]","forward_arg_names":["x"]}}',
    '"metadata":{},"treespec_namedtuple_fields":{}},"opset_version":{"aten":10},"range_constraints":'
    '{"s77":{"min_val":1,"max_val":4096}},"schema_version":{"major":8,"minor":20},"verifiers":["TRAINING"],'
    '"torch_version":"2.13.0+cpu","guards_code":[]}',
    '{"user_input":{"arg":{"as_tensor":{"name":"x"}}}}],"output_specs":[{"user_output":{"arg":{"as_tensor":{"name":"',
    '{"buffer":{"arg":{"name":"b_","buffer_name":"","persistent":true}},{"parameter":{"arg":{"name":"p_'
    '"},"parameter_name":"',
    '{"target":"torch.ops.aten.max_pool2d.default","inputs":[{"name":"self","arg":{"as_tensor":{"name":"'
    '"kernel_size","arg":{"as_ints":[2,2]},"kind":1}',
    '{"target":"torch.ops.aten.batch_norm.default","inputs":[{"name":"input","arg":{"as_tensor":{"name":"'
    '{"name":"running_mean","arg":{"as_tensor":{"name":"b_"}},"kind":1},{"name":"running_var","arg":'
    '{"as_tensor":{"name":"b_"}},"kind":1},{"name":"training","arg":{"as_bool":false},"kind":1},{"name":'
    '"momentum","arg":{"as_float":0.1},"kind":1},{"name":"eps","arg":{"as_float":1e-05},"kind":1},'
    '{"name":"cudnn_enabled","arg":{"as_bool":false},"kind":1}],"outputs":[{"as_tensor":{"name":"batch_norm',
    '{"target":"torch.ops.aten.conv2d.default","inputs":[{"name":"input","arg":{"as_tensor":{"name":"'
    '{"name":"bias","arg":{"as_none":true},"kind":1},{"name":"stride","arg":{"as_ints":[1,1]},"kind":1},'
    '{"name":"padding","arg":{"as_ints":[1,1]},"kind":1}],"outputs":[{"as_tensor":{"name":"conv2d',
    '{"target":"torch.ops.aten.flatten.using_ints","inputs":[{"name":"self","arg":{"as_tensor":{"name":"x"}},'
    '"kind":1},{"name":"start_dim","arg":{"as_int":1},"kind":1}],"outputs":[{"as_tensor":{"name":"flatten"}}],',
    '{"graph_module":{"graph":{"inputs":[{"as_tensor":{"name":"p_',
    '"requires_grad":true,"encoding":"sparse","offset":,"length":,"parts":[],"crc32":,"values":"codebook",'
    '"k":32,"codebook_dtype":"float16","nnz":,"gap_escape":,"gap_count":}',
    '{"torch":"2.13.0+cpu","structure":{"encoding":"torch-export-json+zlib","offset":0,"length":,"crc32":},'
    '"tensors":[{"name":"","kind":"parameter","shape":[],"dtype":"float32",',
    '"payload_length":,"meta":{"task":"classification","steps":[]}}',
    '{"target":"torch.ops.aten.relu_.default","inputs":[{"name":"self","arg":{"as_tensor":{"name":"linear',
    '{"target":"torch.ops.aten.linear.default","inputs":[{"name":"input","arg":{"as_tensor":{"name":"',
    '"}},"kind":1},{"name":"weight","arg":{"as_tensor":{"name":"p_',
    '"}},"kind":1},{"name":"bias","arg":{"as_tensor":{"name":"p_',
    '"}},"kind":1}],"outputs":[{"as_tensor":{"name":"linear"}}],"metadata":{},"is_hop_single_tensor_return":null,"name":"',
    '"tensor_values":{"":{"dtype":7,"sizes":[{"as_expr":{"expr_str":"Symbol(\'s77\', positive=True, integer=True)",'
    '"hint":{"as_int":4}}},{"as_int":',
    '}],"requires_grad":true,"device":{"type":"cpu","index":null},"strides":[{"as_int":',
    '},{"as_int":1}],"storage_offset":{"as_int":0},"layout":7},"',
    '}],"requires_grad":false,"device":{"type":"cpu","index":null},"strides":[{"as_int":',
]
ZDICT = "".join(_FRAGMENTS).encode()


def compress(data: bytes) -> bytes:
    import zlib

    c = zlib.compressobj(9, zdict=ZDICT)
    return c.compress(data) + c.flush()


def decompress(data: bytes) -> bytes:
    import zlib

    d = zlib.decompressobj(zdict=ZDICT)
    out = d.decompress(data) + d.flush()
    if not d.eof or d.unused_data:
        raise zlib.error("compressed stream is incomplete or has trailing data")
    return out
