# The native part of best_score's search (src/search/native/graph-walk.cc), built by `npm install`
# through scripts/build-native.mjs into build/Release/graph_walk.node. usearch's headers come from
# its npm package, so the walk reads graph files as the usearch that wrote them.
{
  "targets": [
    {
      "target_name": "graph_walk",
      "sources": ["src/search/native/graph-walk.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "node_modules/usearch/include"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-O3", "-fexceptions"],
      "cflags_cc!": ["-fno-exceptions"]
    }
  ]
}
