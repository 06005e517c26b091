// Finds Promises dropped on the floor, which the type checker lets through: a statement whose value
// is a Promise neither awaited, returned, voided nor given a .catch (its failure would become an
// unhandled rejection, and the work would race what follows), a Promise held in a variable across an
// await before anything handles it (if it rejects during that wait, the rejection is unhandled and
// ends the process), and a Promise passed to an assertion or compared with === or tested as a
// condition (always true or always false). The stores return Promises (src/state), so a
// call that forgets its await still compiles; this is what catches it.
//   node scripts/check-unawaited.mjs [tsconfig.json]   (default: tsconfig.check.json); exit 1 on a finding
import ts from 'typescript';
import { dirname, relative, resolve } from 'node:path';

const configPath = resolve(process.argv[2] ?? 'tsconfig.check.json');
const parsed = ts.getParsedCommandLineOfConfigFile(configPath, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => { throw new Error(ts.flattenDiagnosticMessageText(d.messageText, ' ')); } });
const program = ts.createProgram(parsed.fileNames, parsed.options);
const checker = program.getTypeChecker();
const root = dirname(configPath);

const isPromise = (type) => (type.isUnion() ? type.types.some(isPromise) : type.getSymbol()?.name === 'Promise');
/** node:test's describe/it/before/after return Promises that the runner awaits. */
const TEST_CALLS = /^(describe|it|test|before|after|beforeEach|afterEach)$/;
/** Assertions that take a Promise on purpose. */
const TAKES_PROMISE = /^assert\.(rejects|doesNotReject)$/;

const findings = [];
const report = (sf, node, what) => {
  const { line } = sf.getLineAndCharacterOfPosition(node.getStart());
  findings.push(`${relative(root, sf.fileName)}:${line + 1}: ${what}: ${node.getText().split('\n')[0].slice(0, 100)}`);
};
/** Always a Promise (not `Promise | null`, whose test is a null check). */
const onlyPromise = (type) => (type.isUnion() ? type.types.every(onlyPromise) : type.getSymbol()?.name === 'Promise');
const dropped = (e) => !ts.isAwaitExpression(e) && !ts.isVoidExpression(e) && isPromise(checker.getTypeAtLocation(e));

const isFunction = (node) => ts.isFunctionLike(node) || ts.isClassLike(node);
/** The server's code (src/): there an unhandled rejection ends the process; a test's runner reports one as a failure. */
const inServer = (sf) => relative(root, sf.fileName).startsWith('src/');
/** A call of a function of ours that gives the Promise it returns a .catch itself. */
function catchesItself(initializer) {
  if (!ts.isCallExpression(initializer)) return false;
  const body = checker.getSymbolAtLocation(initializer.expression)?.declarations?.[0]?.body;
  return body !== undefined && body.getText().includes('.catch(');
}
/**
 * Whether the Promise a declaration holds meets an await of something else (in its own function,
 * after it) before the first mention of its name (an await, .catch, .then, return or hand-over of it).
 */
function heldAcrossAwait(declaration) {
  const statement = declaration.parent?.parent;
  const block = statement?.parent;
  if (!statement || !ts.isVariableStatement(statement) || !block || !('statements' in block)) return false;
  const name = declaration.name.text;
  const after = block.statements.slice(block.statements.indexOf(statement) + 1);
  let verdict = null; // 'handled' or 'held'
  const walk = (node) => {
    if (verdict || isFunction(node)) return;
    if (ts.isIdentifier(node) && node.text === name) return void (verdict = 'handled');
    // An await's operand is evaluated before it waits: a mention there handles the Promise first.
    if (ts.isAwaitExpression(node)) {
      walk(node.expression);
      if (!verdict) verdict = 'held';
      return;
    }
    ts.forEachChild(node, walk);
  };
  for (const next of after) {
    walk(next);
    if (verdict) break;
  }
  return verdict === 'held';
}

for (const sf of program.getSourceFiles()) {
  if (sf.isDeclarationFile || sf.fileName.includes('/node_modules/')) continue;
  const visit = (node) => {
    if (ts.isExpressionStatement(node)) {
      const e = node.expression;
      const assigns = ts.isBinaryExpression(e) && [ts.SyntaxKind.EqualsToken, ts.SyntaxKind.QuestionQuestionEqualsToken].includes(e.operatorToken.kind);
      const callee = ts.isCallExpression(e) ? e.expression.getText() : '';
      if (!assigns && !TEST_CALLS.test(callee) && !e.getText().includes('.catch(') && dropped(e)) report(sf, node, 'a Promise nobody awaits');
    }
    if (inServer(sf) && ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.initializer && dropped(node.initializer) && !catchesItself(node.initializer) && heldAcrossAwait(node)) {
      report(sf, node, 'a Promise held across an await before anything handles it');
    }
    if (ts.isCallExpression(node)) {
      const callee = node.expression.getText();
      if (/^assert(\.|$)/.test(callee) && !TAKES_PROMISE.test(callee)) for (const arg of node.arguments) if (dropped(arg)) report(sf, arg, `a Promise given to ${callee}`);
    }
    if (ts.isBinaryExpression(node) && [ts.SyntaxKind.EqualsEqualsEqualsToken, ts.SyntaxKind.ExclamationEqualsEqualsToken].includes(node.operatorToken.kind)) {
      for (const side of [node.left, node.right]) if (dropped(side)) report(sf, side, 'a Promise compared');
    }
    // A Promise is always truthy: `if (!store.get(id))` never fires.
    const condition = ts.isIfStatement(node) || ts.isWhileStatement(node) || ts.isConditionalExpression(node) ? node.expression ?? node.condition
      : ts.isPrefixUnaryExpression(node) && node.operator === ts.SyntaxKind.ExclamationToken ? node.operand
      : ts.isBinaryExpression(node) && [ts.SyntaxKind.AmpersandAmpersandToken, ts.SyntaxKind.BarBarToken].includes(node.operatorToken.kind) ? node.left
      : null; // prettier-ignore
    if (condition && !ts.isAwaitExpression(condition) && onlyPromise(checker.getTypeAtLocation(condition))) report(sf, condition, 'a Promise tested as a condition');
    ts.forEachChild(node, visit);
  };
  visit(sf);
}
for (const finding of findings) console.error(finding);
console.error(`unawaited Promises: ${findings.length} in ${program.getSourceFiles().filter((f) => !f.isDeclarationFile && !f.fileName.includes('/node_modules/')).length} files`);
process.exit(findings.length ? 1 : 0);
