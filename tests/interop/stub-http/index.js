'use strict';
// hyco-ws 1.0.5 declares a dependency on "http@latest", which the npm registry cannot
// resolve. package.json overrides it with this stub; it only re-exports Node's module.
module.exports = require('node:http');
