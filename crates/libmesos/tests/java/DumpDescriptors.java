// Prints the protobuf schema compiled into Mesos' Java bindings, one line
// per field and enum value, sorted, so a test can compare it with ours:
//   field <message> <name> <number> <label> <type> [<type name>]
//   value <enum> <name> <number>
//   default <message> <name> <value>     (only for an explicit [default = ...];
//                                         an enum default is the value's name)
//
// With no arguments it dumps the v0 schema (`org.apache.mesos.Protos`).
// Otherwise each argument names a generated outer class whose file is
// dumped, e.g. `org.apache.mesos.v1.scheduler.Protos`. Only the named
// files' own types are printed, not those of the files they import.
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.apache.mesos.protobuf.Descriptors;

public class DumpDescriptors {
    public static void main(String[] args) throws Exception {
        List<Descriptors.FileDescriptor> files = new ArrayList<>();
        if (args.length == 0) {
            files.add(org.apache.mesos.Protos.getDescriptor());
        }
        for (String className : args) {
            Object file = Class.forName(className).getMethod("getDescriptor").invoke(null);
            files.add((Descriptors.FileDescriptor) file);
        }
        List<String> out = new ArrayList<>();
        for (Descriptors.FileDescriptor file : files) {
            for (Descriptors.Descriptor m : file.getMessageTypes()) message(m, out);
            for (Descriptors.EnumDescriptor e : file.getEnumTypes()) enumeration(e, out);
        }
        Collections.sort(out);
        for (String line : out) System.out.println(line);
    }

    static void message(Descriptors.Descriptor m, List<String> out) {
        for (Descriptors.FieldDescriptor f : m.getFields()) {
            String label = f.isRequired() ? "required" : f.isRepeated() ? "repeated" : "optional";
            String type = f.getType().name().toLowerCase();
            String typeName = "";
            if (f.getType() == Descriptors.FieldDescriptor.Type.MESSAGE) typeName = " " + f.getMessageType().getFullName();
            if (f.getType() == Descriptors.FieldDescriptor.Type.ENUM) typeName = " " + f.getEnumType().getFullName();
            out.add("field " + m.getFullName() + " " + f.getName() + " " + f.getNumber() + " " + label + " " + type + typeName);
            if (f.toProto().hasDefaultValue()) {
                Object value = f.getDefaultValue();
                String text = value instanceof Descriptors.EnumValueDescriptor
                    ? ((Descriptors.EnumValueDescriptor) value).getName()
                    : String.valueOf(value);
                out.add("default " + m.getFullName() + " " + f.getName() + " " + text);
            }
        }
        for (Descriptors.Descriptor n : m.getNestedTypes()) message(n, out);
        for (Descriptors.EnumDescriptor e : m.getEnumTypes()) enumeration(e, out);
    }

    static void enumeration(Descriptors.EnumDescriptor e, List<String> out) {
        for (Descriptors.EnumValueDescriptor v : e.getValues()) {
            out.add("value " + e.getFullName() + " " + v.getName() + " " + v.getNumber());
        }
    }
}
