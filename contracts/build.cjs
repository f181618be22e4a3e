// Regenerates the committed artifacts (<Name>.json: abi + creation bytecode) from the .sol sources with
// solc-js 0.8.37 and OpenZeppelin 5.7.0. The node packages come from `scripts/install-test-deps`.
// Usage: node contracts/build.cjs   (from the repository root)
const path = require('path');
const fs = require('fs');
const modules = path.resolve(__dirname, '..', '.cache', 'node', 'node_modules');
const solc = require(path.join(modules, 'solc'));

const contracts = fs.readdirSync(__dirname).filter((f) => f.endsWith('.sol'));
const sources = Object.fromEntries(
  contracts.map((f) => [f, { content: fs.readFileSync(path.join(__dirname, f), 'utf8') }]),
);
const input = {
  language: 'Solidity',
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'cancun',
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  },
};
const findImports = (p) => {
  try {
    return { contents: fs.readFileSync(path.join(modules, p), 'utf8') };
  } catch {
    return { error: `not found: ${p}` };
  }
};
const out = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (out.errors || []).filter((e) => e.severity === 'error');
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
for (const file of contracts) {
  for (const [name, c] of Object.entries(out.contracts[file])) {
    if (!c.evm.bytecode.object) continue; // interfaces
    const artifact = {
      contractName: name,
      compiler: solc.version(),
      abi: c.abi,
      bytecode: '0x' + c.evm.bytecode.object,
      deployedBytecode: '0x' + c.evm.deployedBytecode.object,
    };
    fs.writeFileSync(path.join(__dirname, `${name}.json`), JSON.stringify(artifact, null, 1) + '\n');
    console.log(`${name}: ${c.evm.bytecode.object.length / 2} bytes`);
  }
}
